"""The names of everything oneproxy keeps in Redis, under one prefix.

The prefix is ``ONEPROXY_REDIS_PREFIX`` (Django setting, default ``op:``),
passed to the relay as ``RelayConfig.redis_prefix``; billing builds the same
names from the same setting, so relay and workers agree on every key.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "op:"
# The consumer group every relay process (and billing.settle_usage) reads
# the usage stream in. Not prefixed: it lives inside the prefixed stream.
USAGE_GROUP = "settlers"

Subject = tuple[str, int]  # ("user", id) or ("team", id): who has a budget


@dataclass(frozen=True, slots=True)
class RedisNames:
    prefix: str = DEFAULT_PREFIX

    @property
    def usage_stream(self) -> str:
        """Usage events queued at settlement, until written to the database."""
        return self.prefix + "usage"

    @property
    def holds(self) -> str:
        """Holds in flight, scored by when they were taken, so reconcile can
        give back exactly the holds of requests whose process died."""
        return self.prefix + "holds"

    @property
    def sent(self) -> str:
        """Holds whose request was sent upstream: registry ref → the usage
        event to charge at the hold's estimate if its process dies before
        settling (billing.mirror.release_stale_holds)."""
        return self.prefix + "holds:sent"

    @property
    def key_channel(self) -> str:
        """Pub/sub channel of provider-key state changes (relay/keybus.py)."""
        return self.prefix + "keys"

    @property
    def key_states(self) -> str:
        """Hash of the latest state change per provider key (relay/keybus.py)."""
        return self.prefix + "keystates"

    @property
    def reconcile_suspects(self) -> str:
        """Mirrors that disagreed with the database at the last reconcile run:
        user id → "mirror:balance:first_seen" (billing.services.reconcile)."""
        return self.prefix + "recon:suspects"

    @property
    def balance_prefix(self) -> str:
        return self.prefix + "bal:"

    def balance(self, user_id: int) -> str:
        """The user's balance mirror: database balance − holds − queued costs."""
        return f"{self.prefix}bal:{user_id}"

    def used(self, token_id: int) -> str:
        """A capped token's used amount, mirrored like the balance."""
        return f"{self.prefix}used:{token_id}"

    def allowance(self, subject: Subject, period_start: float, budget: int) -> str:
        """What is left of a budget this period. The period start and the
        budget are in the name, so a new period or a changed budget starts a
        new key."""
        return f"{self.prefix}allow:{subject[0]}:{subject[1]}:{int(period_start)}:{budget}"
