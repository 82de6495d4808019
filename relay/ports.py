"""What the relay needs from the rest of the project, as plain interfaces.

The apps implement these (channels_app/snapshot.py, billing/snapshot.py,
billing/usage_sink.py) and oneproxy/asgi.py wires them in at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import orjson

from relay.keystate import Transition
from relay.metering import Usage
from relay.snapshot import Snapshot


@dataclass(slots=True)
class UsageEvent:
    request_id: str
    created_at: float
    user_id: int
    token_id: int | None
    endpoint: str
    model: str
    upstream_model: str
    channel_id: int | None
    key_id: int | None
    usage: Usage
    cost: int
    group_multiplier: str
    team_multiplier: str
    attempts: int
    status: int
    latency_ms: int
    stream: bool
    error: str = ""
    held: int = 0  # µUSD held for the request
    # µUSD of the real cost not charged: what would have taken the balance
    # below minus this request's own overdraft (relay/metering.charge_micro).
    written_off: int = 0
    # "" a settled request; "sent" written when the request goes upstream,
    # charged at the hold's estimate only if its process dies before
    # settling; "void" cancels a "sent" whose request never left after all.
    kind: str = ""
    # The team charged: the user's when the request was made, whose budget
    # the hold counted against. TEAM_OF_USER: queued by a relay from before
    # events carried it; settlement charges the user's team then.
    team_id: int | None = None


TEAM_OF_USER = -1


@dataclass(slots=True)
class Settled:
    """The database's balances after a batch of usage was written."""

    balances: dict[int, int] = field(default_factory=dict)  # user id → µUSD
    token_used: dict[int, int] = field(default_factory=dict)  # token id → µUSD


def encode_event(event: UsageEvent) -> bytes:
    return orjson.dumps(event)


def decode_event(raw: bytes) -> UsageEvent:
    data = orjson.loads(raw)
    data["usage"] = Usage(**data["usage"])
    data.setdefault("team_id", TEAM_OF_USER)
    return UsageEvent(**data)


class Backend(Protocol):
    """Synchronous database work; the relay runs it in its one DB thread."""

    def config_version(self) -> int: ...

    def load_snapshot(self) -> Snapshot: ...

    def apply_usage(self, events: list[UsageEvent]) -> Settled:
        """Write usage rows and charges in one transaction; idempotent by request id."""

    def balances(self, user_ids: list[int], token_ids: list[int]) -> Settled: ...

    def budget_spent(self, kind: str, subject_id: int, period: str) -> int:
        """µUSD charged to a user (``kind="user"``) or team in its current
        budget period: its counter in the database (seeds Redis allowances)."""

    def record_key_transitions(self, transitions: list[Transition]) -> None:
        """Persist keys' new states (relay/keystate.Transition) with their events."""

    def record_key_stats(self, stats: dict[int, tuple[float, float | None, int | None]]) -> None:
        """key id → (last used, last success, latency ms), epoch seconds."""

    def close(self) -> None:
        """Release this thread's database connections (called at shutdown)."""
