"""One log line when a shared dependency (Redis) stops answering and one when
it is back, not a traceback per request: an outage of a minute under load
was 1,364 ERROR lines before."""

from __future__ import annotations

import logging
import time

from relay.errors import RelayError
from relay.i18n import N_

log = logging.getLogger("oneproxy.relay.outage")


def store_unavailable() -> RelayError:
    """The documented answer while Redis is unreachable (503 ``store_unavailable``)."""
    return RelayError(
        503,
        N_("The gateway's shared store (Redis) is not answering; nothing was charged. Retry shortly."),
        type="server_error",
        code="store_unavailable",
    )


class Outage:
    """Failures of one dependency, logged once per outage."""

    __slots__ = ("down_since", "failures", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.down_since: float | None = None
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.error("%s is not answering (%s: %s); requests get 503 store_unavailable until it is back",
                      self.name, type(exc).__name__, exc)  # fmt: skip

    def ok(self) -> None:
        if self.down_since is not None:
            log.warning("%s is back after %.1f s; %d calls failed meanwhile",
                        self.name, time.monotonic() - self.down_since, self.failures)  # fmt: skip
            self.down_since = None
            self.failures = 0
