"""The paced upstream: an aiohttp server sending OpenAI chat.completion.chunk
streams on a fixed schedule, so a relay's added delay per chunk is visible.

The model name picks the pace:
- ``bench-stream``: 64 content chunks, one every ``--interval`` seconds
  (first at once), then ``[DONE]``;
- ``bench-slow``: 20 content chunks, one per second (first at once),
  ``[DONE]`` a second after the last: a 20-second stream.
Chunk i is sent at start + i × interval (an absolute schedule, so the
server's own jitter does not accumulate). A usage chunk is sent before
``[DONE]`` when the request asks for one (``stream_options.include_usage``).

Run: python bench/sse_upstream.py --port 18081 [--interval 0.005]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

MODES = {"bench-slow": (20, 1.0)}
STREAM_CHUNKS = 64


def _chunk(model: str, delta: dict, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-benchstream0000000000000001",
        "object": "chat.completion.chunk",
        "created": 1735689600,
        "model": model,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _usage(model: str, completion_tokens: int) -> bytes:
    body = {
        "id": "chatcmpl-benchstream0000000000000001",
        "object": "chat.completion.chunk",
        "created": 1735689600,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 14, "completion_tokens": completion_tokens, "total_tokens": 14 + completion_tokens},
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


_cache: dict[tuple[str, int], list[bytes]] = {}


def events(model: str, n: int) -> list[bytes]:
    """The n content chunks of a reply (prebuilt: the upstream should cost little)."""
    key = (model, n)
    if key not in _cache:
        out = [_chunk(model, {"role": "assistant", "content": "w0"})]
        out += [_chunk(model, {"content": f" w{i}"}) for i in range(1, n - 1)]
        out.append(_chunk(model, {"content": f" w{n - 1}"}, finish="stop"))
        _cache[key] = out
    return _cache[key]


async def chat(request: web.Request) -> web.StreamResponse:
    payload = await request.json()
    model = str(payload.get("model", "bench-stream"))
    n, interval = MODES.get(model, (STREAM_CHUNKS, request.app["interval"]))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    chunks = events(model, n)
    start = time.monotonic()
    for i, chunk in enumerate(chunks):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await response.write(chunk)
    if model in MODES:
        await asyncio.sleep(interval)  # the slow stream lasts its full 20 s
    if (payload.get("stream_options") or {}).get("include_usage"):
        await response.write(_usage(model, n))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.005)
    args = parser.parse_args()
    import uvloop

    loop = uvloop.new_event_loop()
    app = web.Application()
    app["interval"] = args.interval
    app.router.add_post("/v1/chat/completions", chat)
    # A deep backlog: 2,000 streams open within a couple of seconds.
    web.run_app(
        app, host="127.0.0.1", port=args.port, backlog=4096, access_log=None, print=None, loop=loop, shutdown_timeout=1
    )


if __name__ == "__main__":
    main()
