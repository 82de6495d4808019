"""The misbehaving-upstream mode every emulator shares.

A key set to one of :data:`FAULTS` (``emulator.set_key_behaviour(key,
"reset_mid_body")``) is answered with that fault instead of the provider's
normal answer. The fault is built from the emulator's own pieces (its error
shape, one content event of its stream format, one whole answer), so the same
faults exercise a gateway in front of any provider:

- ``reset_before_headers``: the connection is dropped before any byte.
- ``reset_mid_body``: headers and half of a whole answer, then dropped (a
  stream request: some events, then dropped).
- ``reset_mid_stream``: ``kw["chunks"]`` (2) content events, then dropped.
- ``stall``: nothing for ``kw["seconds"]`` (an hour), then the normal answer.
- ``stall_after_headers``: headers (and, for a stream, one event), then nothing.
- ``html_error``: status ``kw["status"]`` (502) with a proxy's HTML page.
- ``invalid_utf8``: a 200 answer (or stream) with bytes that are not UTF-8.
- ``huge_sse_line``: a stream with one event of ``kw["size"]`` (1 MB) bytes.
- ``endless_stream``: content events every ``kw["interval"]`` s, never ending.
- ``quote_key``: an error (status ``kw["status"]``, 500) quoting the whole key;
  for a stream, a 200 stream whose error event quotes it.
- ``ignore_limits``: the normal answer, as if ``max_tokens`` (and its
  aliases) had not been sent: an upstream that ignores the cap.
- ``quote_field``: if the body has field ``kw["field"]``, OpenAI's 400
  "Unrecognized request argument supplied: FIELD" (an error text that echoes
  the client's own request); otherwise the normal answer.

429 storms with odd ``Retry-After`` values use the provider's own
``rate_limited`` behaviour (``retry_after=`` any string).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .base import Call, EmulatorBase

__all__ = ["FAULTS", "run"]

FAULTS = frozenset(
    {
        "reset_before_headers",
        "reset_mid_body",
        "reset_mid_stream",
        "stall",
        "stall_after_headers",
        "html_error",
        "invalid_utf8",
        "huge_sse_line",
        "endless_stream",
        "quote_key",
        "quote_field",
        "ignore_limits",
    }
)

HTML_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
NOT_UTF8 = b"\xff\xfe\xc3\x28"


async def run(emulator: EmulatorBase, request: web.Request, call: Call) -> web.StreamResponse | None:
    """Answer with the key's fault; None: go on with the normal answer."""
    kind, kw = call.behaviour, call.options
    if kind == "reset_before_headers":
        return emulator._abort(request, web.StreamResponse())
    if kind == "stall":
        await asyncio.sleep(float(kw.get("seconds", 3600)))
        return None
    if kind == "html_error":
        status = int(kw.get("status", 502))
        return web.Response(status=status, body=HTML_PAGE, content_type="text/html")
    if kind == "ignore_limits":
        if isinstance(call.body, dict):
            for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
                call.body.pop(name, None)
        return None
    if kind == "quote_field":
        from .base import APIError

        name = kw["field"]
        if isinstance(call.body, dict) and name in call.body:
            raise APIError(400, f"Unrecognized request argument supplied: {name}", code=None)
        return None
    key = call.record["key"] or ""
    if kind == "quote_key" and not call.wants_stream:
        from .base import APIError

        status = int(kw.get("status", 500))
        raise APIError(status, f"Upstream failure for key {key}: please retry.", type="server_error")
    if call.wants_stream or kind in ("reset_mid_stream", "huge_sse_line", "endless_stream"):
        return await _stream_fault(emulator, request, call, key)
    return await _body_fault(emulator, request, call)


async def _open_stream(emulator: EmulatorBase, request: web.Request, call: Call) -> web.StreamResponse:
    headers = emulator._common_headers(call)
    headers.update({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    return response


async def _stream_fault(emulator: EmulatorBase, request: web.Request, call: Call, key: str) -> web.StreamResponse:
    kind, kw = call.behaviour, call.options
    response = await _open_stream(emulator, request, call)
    event = emulator.fault_event
    if kind in ("reset_mid_stream", "reset_mid_body"):
        for i in range(int(kw.get("chunks", 2))):
            await response.write(event(call, f" part{i}"))
        return emulator._abort(request, response)
    if kind == "stall_after_headers":
        await response.write(event(call, "Hello"))
        await asyncio.sleep(float(kw.get("seconds", 3600)))
        return emulator._abort(request, response)
    if kind == "endless_stream":
        interval = float(kw.get("interval", 0.005))
        while True:  # until the client hangs up (the handler is cancelled then)
            await response.write(event(call, " more"))
            await asyncio.sleep(interval)
    if kind == "quote_key":
        await response.write(event(call, "Hello"))
        await response.write(emulator.fault_error_event(call, f"Upstream failure for key {key}: please retry."))
        await response.write_eof()
        return response
    if kind == "huge_sse_line":
        await response.write(event(call, "x" * int(kw.get("size", 1 << 20))))
    elif kind == "invalid_utf8":
        await response.write(event(call, "BADBYTES").replace(b"BADBYTES", NOT_UTF8))
    await response.write(emulator.fault_stream_end(call))
    await response.write_eof()
    return response


async def _body_fault(emulator: EmulatorBase, request: web.Request, call: Call) -> web.StreamResponse:
    kind, kw = call.behaviour, call.options
    body = emulator.fault_body(call, "Hello from a faulty upstream")
    if kind == "invalid_utf8":
        body = emulator.fault_body(call, "BADBYTES").replace(b"BADBYTES", NOT_UTF8)
        return web.Response(body=body, content_type="application/json", headers=emulator._common_headers(call))
    headers = {**emulator._common_headers(call), "Content-Type": "application/json", "Content-Length": str(len(body))}
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if kind == "stall_after_headers":
        await asyncio.sleep(float(kw.get("seconds", 3600)))
    return emulator._abort(request, response)
