"""Fetching images by URL for providers that take only inline data
(Anthropic, for an OpenAI client's ``image_url`` with an http(s) URL).

This is the gateway fetching what a client names, so it is guarded: http
and https only; every address the host resolves to — checked where the
connection is made, so after DNS resolution and on every redirect — must be
public (no private, loopback, link-local, multicast, reserved or unspecified
address), unless it lies in a network the operator allows
(ONEPROXY_IMAGE_FETCH_ALLOW_NETWORKS); at most a few redirects; a size cap
(ONEPROXY_IMAGE_FETCH_MAX_BYTES) enforced while reading; a time limit; and
only image types the providers accept, sniffed from the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from relay.call import Call
from relay.errors import RelayError, bad_request
from relay.i18n import N_
from relay.providers.base import Image
from relay.snapshot import Network

MAX_REDIRECTS = 3
TIMEOUT = 10.0
# Magic numbers of the image types Anthropic accepts.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """An address the guard does not let the gateway reach."""


def allowed(ip: Address, networks: Sequence[Network]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in networks):
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then refuses a host any of whose addresses is not allowed."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = networks
        self.inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        for entry in found:
            if not allowed(ipaddress.ip_address(entry["host"]), self.networks):
                raise Refused(f"{host} resolves to {entry['host']}, a private or reserved address")
        return found

    async def close(self) -> None:
        await self.inner.close()


def media_type(data: bytes) -> str | None:
    """The image type of ``data`` by its first bytes (a server's Content-Type is not trusted)."""
    for magic, kind in SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class ImageFetcher:
    def __init__(self, max_bytes: int, networks: Sequence[Network]) -> None:
        self.max_bytes = max_bytes
        self.networks = tuple(networks)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.networks), limit=32, ttl_dns_cache=None)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT), trust_env=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch_all(self, call: Call, urls: list[str]) -> None:
        """Fetch each URL once into ``call.images``; a 400 naming the URL when one fails."""
        found = await asyncio.gather(*(self.fetch(url) for url in dict.fromkeys(urls)))
        call.images.update(zip(dict.fromkeys(urls), found, strict=True))

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused("only http and https image URLs are fetched")
        try:
            ip = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not allowed(ip, self.networks):
            raise Refused(f"{ip} is a private or reserved address")

    async def fetch(self, url: str) -> Image:
        shown = url[:200]
        try:
            data = await self._get(url)
        except Refused as exc:
            raise bad_request(
                N_("The image URL {url} was not fetched: {reason}."),
                code="image_url_refused",
                params={"url": shown, "reason": exc},
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, Refused) else None
            if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, Refused):
                cause = exc.os_error
            if cause is not None:
                raise bad_request(
                    N_("The image URL {url} was not fetched: {reason}."),
                    code="image_url_refused",
                    params={"url": shown, "reason": cause},
                ) from None
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise bad_request(
                N_("The image URL {url} could not be fetched ({reason})."),
                code="image_fetch_failed",
                params={"url": shown, "reason": reason},
            ) from None
        kind = media_type(data)
        if kind is None:
            raise bad_request(
                N_("The image URL {url} is not a PNG, JPEG, GIF or WebP image."),
                code="image_fetch_failed",
                params={"url": shown},
            )
        return Image(kind, base64.b64encode(data).decode())

    async def _get(self, url: str) -> bytes:
        session = self.session()
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url)
            async with session.get(url, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status != 200:
                    raise RelayError(
                        400, f"The image URL {url[:200]} answered {response.status}.", code="image_fetch_failed"
                    )
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(url)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(url)
                    chunks.append(chunk)
                return b"".join(chunks)
        raise Refused(f"more than {MAX_REDIRECTS} redirects")

    def _too_large(self, url: str) -> RelayError:
        return bad_request(
            N_("The image at {url} is larger than {limit} bytes."),
            code="image_too_large",
            params={"url": url[:200], "limit": self.max_bytes},
        )
