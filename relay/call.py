"""One client request on its way through the relay, and what an attempt
upstream can say about it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay import keystate
from relay.ledger import Hold
from relay.providers.base import Image, Inbound, Json
from relay.snapshot import ChannelSnap, KeySnap, Snapshot, TokenSnap, UserSnap


class UpstreamFailure(Exception):
    """One attempt failed before anything reached the client."""

    def __init__(self, status: int, verdict: keystate.Verdict, *, reached: bool = True, timeout: bool = False) -> None:
        super().__init__(verdict.message)
        self.status = status
        self.verdict = verdict
        self.reached = reached
        self.timeout = timeout


@dataclass(slots=True)
class Call:
    """One client request on its way through the relay."""

    request_id: str
    started: float
    snapshot: Snapshot  # the one picture this request sees throughout
    inbound: Inbound
    endpoint: str
    token: TokenSnap
    user: UserSnap
    model: str
    raw: bytes
    payload: dict[str, Any] | None
    content_type: str
    stream: bool
    # Request headers an upstream of the client's own format is given (anthropic-beta …).
    client_headers: Mapping[str, str] = field(default_factory=dict)
    hold: Hold | None = None
    attempts: int = 0
    reached: bool = False
    channel: ChannelSnap | None = None
    key: KeySnap | None = None
    converted: bool = False  # the answering upstream speaks another format than the client
    hub: Json | None = None  # the request in the hub shape, once a conversion needed it
    images: dict[str, Image] = field(default_factory=dict)  # fetched http(s) images, by URL
    upstream: float = 0.0  # seconds spent waiting on upstreams, every attempt
    ledger: float = 0.0  # seconds spent in the ledger: the hold, the settlement

    @property
    def wants_usage(self) -> bool:
        """Whether an OpenAI-format client asked for the stream's usage chunk."""
        return bool(((self.payload or {}).get("stream_options") or {}).get("include_usage"))


def server_timing(call: Call) -> tuple[bytes, bytes]:
    """The W3C ``Server-Timing`` header, in milliseconds since the request
    began: ``ledger``, the hold and the settlement (Redis round trips in
    service mode; in memory, plus the journal write, in embedded mode);
    ``upstream``, waiting on upstreams (connecting, the answer's headers and,
    before a whole answer is sent, its body); ``gateway``, the rest: the
    relay's own work. Clients and the benchmark read where a request's time
    went."""
    upstream, ledger = call.upstream * 1000, call.ledger * 1000
    gateway = (time.monotonic() - call.started) * 1000 - upstream - ledger
    return b"server-timing", b"gateway;dur=%.3f, ledger;dur=%.3f, upstream;dur=%.3f" % (gateway, ledger, upstream)
