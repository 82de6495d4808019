"""What every provider adapter and inbound format offers the relay.

An adapter is pure and synchronous: functions over bytes and dicts, and one
small object per stream. It never sees a socket, a framework object or a
logger; the relay (relay/upstream.py, relay/answer.py) does every read and
write, every retry and timeout, for all of them alike.

Between an inbound format (what the client speaks, relay/inbound/) and a
provider (what the upstream speaks, relay/providers/) sits one hub shape:
OpenAI's chat completion request, response and stream chunk, as dicts.
When both sides speak the same format nothing is converted: the body passes
through as bytes (``Provider.native_request``, ``Provider.native_stream``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from relay.keystate import Verdict
from relay.metering import Usage
from relay.snapshot import ChannelSnap

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Image:
    """An image the relay fetched for an adapter that needs the bytes (an
    http(s) URL given to a provider that takes only inline data)."""

    media_type: str
    data_b64: str


class ConversionError(ValueError):
    """The request cannot be said in the upstream's format (the client's
    fault: answered 400, no key is touched)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Stream(Protocol):
    """One stream on its way to the client, event by event.

    ``take`` gets one whole SSE event (ending in a blank line) and returns
    the bytes to send now (b"" or None: nothing yet). ``usage`` is what the
    upstream reported so far; ``done`` whether it ended as its format says
    a stream ends; ``error`` the upstream's own error event, if any.
    ``end`` is what closes a complete stream for the client, ``error_tail``
    what closes a broken one, in the client's format."""

    error: str | None

    @property
    def usage(self) -> Usage | None: ...

    @property
    def done(self) -> bool: ...

    def take(self, event: bytes) -> bytes | None: ...

    def end(self) -> bytes: ...

    def error_tail(self, message: str, request_id: str) -> bytes: ...

    def delivered_text(self) -> str: ...


class HubDecoder(Protocol):
    """A provider's stream, as hub chunks (OpenAI chat.completion.chunk dicts)."""

    usage: Usage | None
    done: bool
    error: str | None

    def feed(self, event: bytes) -> list[Json]: ...


class HubEncoder(Protocol):
    """Hub chunks, as a client's stream format."""

    def encode(self, chunk: Json) -> bytes: ...

    def end(self, usage: Usage | None) -> bytes: ...

    def error_tail(self, message: str, request_id: str) -> bytes: ...


class Inbound(Protocol):
    """A format clients speak (relay/inbound/)."""

    format: str

    def to_hub(self, payload: Json) -> Json:
        """The client's request as a hub chat request."""

    def from_hub(self, hub: Json, model: str) -> bytes:
        """A hub chat completion as the client's answer."""

    def hub_encoder(self, model: str, client_wants_usage: bool) -> HubEncoder: ...

    def error_body(self, status: int, message: str, type: str, code: str | None, param: str | None) -> bytes:
        """An error in the client's format (``message`` carries the request id)."""


class Provider(Protocol):
    """An upstream wire format. ``format`` names it, as an inbound format
    names its own: equal names pass bytes through."""

    format: str

    def native_request(
        self,
        channel: ChannelSnap,
        secret: str,
        endpoint: str,
        raw: bytes,
        payload: Json | None,
        model: str,
        stream: bool,
        content_type: str,
        client_headers: Mapping[str, str],
    ) -> UpstreamRequest:
        """The client's own request (same format), for this channel."""

    def hub_request(
        self, channel: ChannelSnap, secret: str, hub: Json, model: str, stream: bool, images: Mapping[str, Image]
    ) -> UpstreamRequest:
        """A hub chat request, converted for this upstream."""

    def remote_images(self, hub: Json) -> list[str]:
        """http(s) image URLs the relay must fetch before ``hub_request``."""

    def native_usage(self, body: bytes) -> Usage | None:
        """Usage of a whole native answer; None when it reports none."""

    def native_stream(self, client_wants_usage: bool, secret: str, renames: tuple[tuple[bytes, bytes], ...]) -> Stream:
        """Watches a stream passed through: usage, the end, masking."""

    def hub_response(self, body: bytes, model: str) -> tuple[Json, Usage | None]:
        """A whole answer as a hub chat completion, and its usage as this
        provider counts it (cache reads and writes included)."""

    def hub_decoder(self, model: str) -> HubDecoder: ...

    def judge(
        self, status: int, body: bytes, headers: Mapping[str, str], secret: str, phrases: tuple[str, ...]
    ) -> Verdict: ...

    def probe_request(self, channel: ChannelSnap, secret: str, model: str) -> UpstreamRequest:
        """The cheapest real request that proves a key works (1 output token)."""
