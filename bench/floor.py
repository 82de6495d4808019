"""The floor: the least a Python pass-through can cost. A bare ASGI app
(served by uvicorn with uvloop and httptools, like oneproxy) forwarding each
POST body to ``FLOOR_UPSTREAM`` + path with one shared aiohttp session. No
auth, no routing, no billing: whatever oneproxy spends above this is the
price of being a gateway.

Run: FLOOR_UPSTREAM=http://127.0.0.1:18080 uvicorn bench.floor:app \
         --loop uvloop --http httptools --no-access-log --workers 1
"""

from __future__ import annotations

import os

import aiohttp

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:18080")
# Diagnostic switch: aiohttp's trust_env=True (proxy and .netrc lookups on
# every request) to measure what that setting alone costs.
TRUST_ENV = os.environ.get("FLOOR_TRUST_ENV") == "1"
session: aiohttp.ClientSession | None = None


async def app(scope, receive, send) -> None:
    global session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Same client settings as the relay: no connection cap, no total timeout.
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0),
                    timeout=aiohttp.ClientTimeout(total=None),
                    trust_env=TRUST_ENV,
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if session is not None:
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http" and session is not None
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    async with session.post(
        UPSTREAM + scope["path"], data=b"".join(chunks), headers={"Content-Type": "application/json"}
    ) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json").encode()
        if content_type.startswith(b"text/event-stream"):
            # Streams are passed on chunk by chunk, as they arrive.
            await send(
                {"type": "http.response.start", "status": upstream.status, "headers": [(b"content-type", content_type)]}
            )
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            body = await upstream.read()
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
