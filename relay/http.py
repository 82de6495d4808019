"""Small ASGI helpers: reading a bounded body, sending whole responses."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from relay.errors import RelayError
from relay.i18n import N_
from relay.snapshot import Network

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"


def header(scope: Scope, name: bytes) -> bytes | None:
    key: bytes
    value: bytes
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float = 30.0) -> bytes:
    """The whole request body, refusing (413) as soon as it passes ``limit``,
    before reading the rest: a declared Content-Length over it is refused
    without reading anything. A body that has not arrived within ``timeout``
    seconds (a client that promised one and stalled) is a 408."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    try:
        async with asyncio.timeout(timeout):
            return await _read_all(receive, limit)
    except TimeoutError:
        raise RelayError(
            408,
            N_("The request body did not arrive within {seconds} s."),
            code="request_timeout",
            params={"seconds": f"{timeout:g}"},
        ) from None


async def _read_all(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body = message.get("body", b"")
        if body:
            size += len(body)
            if size > limit:
                raise too_large(limit)
            chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def too_large(limit: int) -> RelayError:
    return RelayError(
        413, N_("Request body is larger than {limit} bytes."), code="request_too_large", params={"limit": limit}
    )


class ClientGone(Exception):
    """The client disconnected."""


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    content_type: bytes = JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def client_ip(scope: Scope, trusted: tuple[Network, ...]) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The socket peer, unless it is a trusted proxy: then the right-most
    X-Forwarded-For address that is not itself a trusted proxy."""
    client = scope.get("client")
    try:
        ip = ipaddress.ip_address(client[0]) if client else None
    except ValueError:
        return None
    if ip is None or not trusted or not any(ip in net for net in trusted):
        return ip
    forwarded = header(scope, b"x-forwarded-for")
    if not forwarded:
        return ip
    for part in reversed(forwarded.decode("latin-1").split(",")):
        try:
            hop = ipaddress.ip_address(part.strip())
        except ValueError:
            return ip
        if not any(hop in net for net in trusted):
            return hop
    return ip
