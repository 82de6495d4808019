"""ASGI entry point: the relay serves /v1/* (and its unprefixed twins);
Django serves the admin (and its static files), the management API and
health checks.

The relay is a lean ASGI app of its own, not a Django view: Django's
request handling alone costs several times the whole relay's budget
(docs/ARCHITECTURE.md, "Processes and modes").
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneproxy.settings")

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()

from oneproxy.relay_backend import DjangoBackend, relay_config  # noqa: E402
from relay.app import Relay, is_relay_path  # noqa: E402


def build(relay: Relay):
    body_timeout = relay.config.body_timeout

    async def application(scope, receive, send):
        if scope["type"] == "http" and is_relay_path(scope["path"]):
            await relay(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(relay, receive, send)
        elif scope["type"] == "http":
            await _django_with_body_deadline(scope, receive, send, body_timeout)
        else:
            await django_app(scope, receive, send)

    return application


async def _django_with_body_deadline(scope, receive, send, timeout: float) -> None:
    """Django, with the relay's bound on how long a request body may take: a
    client that promised a body and stalled gets a 408 and its connection
    closed after ``timeout`` seconds, instead of holding it open."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    state = {"body_done": False, "timed_out": False, "started": False}

    async def bounded_receive():
        if state["body_done"]:
            return await receive()
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                message = await receive()
        except TimeoutError:
            state["timed_out"] = True
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            state["body_done"] = True
        return message

    async def tracked_send(message):
        if message["type"] == "http.response.start":
            state["started"] = True
        await send(message)

    await django_app(scope, bounded_receive, tracked_send)
    if state["timed_out"] and not state["started"]:
        body = (
            b'{"error": {"message": "The request body did not arrive within %d s.", '
            b'"type": "invalid_request_error", "code": "request_timeout"}}' % int(timeout)
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 408, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _lifespan(relay: Relay, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _warn_key_beside_data()
            try:
                await relay.startup()
            except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await relay.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _warn_key_beside_data() -> None:
    import logging
    from pathlib import Path

    from django.conf import settings

    from oneproxy.env import generated_secret_path, key_beside_data

    db = settings.DATABASES["default"]
    sqlite = Path(db["NAME"]) if "sqlite" in db["ENGINE"] else None
    key_file = generated_secret_path("ONEPROXY_ENCRYPTION_KEY", settings.DATA_DIR)
    warning = key_beside_data(settings.SERVICE_MODE, key_file, sqlite)
    if warning:
        logging.getLogger("oneproxy").warning(warning)


relay = Relay(relay_config(), DjangoBackend())
application = build(relay)
