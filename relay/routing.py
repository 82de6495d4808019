"""Which channel and key serve a request.

Channels: highest priority tier first; inside a tier, weighted random order.
Keys: round-robin over the channel's usable keys, so traffic spreads evenly
instead of in random bursts.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator

from relay.snapshot import ChannelSnap, KeySnap

_rng = random.Random()


def weighted_order(channels: tuple[ChannelSnap, ...]) -> list[ChannelSnap]:
    """A weighted random permutation (Efraimidis–Spirakis): the first element
    is chosen with probability weight / total, then the rest likewise."""
    if len(channels) == 1:
        return [channels[0]]
    keyed = sorted(channels, key=lambda c: _rng.random() ** (1.0 / max(c.weight, 1)), reverse=True)
    return keyed


def candidate_channels(tiers: tuple[tuple[ChannelSnap, ...], ...]) -> Iterator[ChannelSnap]:
    for tier in tiers:
        yield from weighted_order(tier)


class KeyPicker:
    """Round-robin cursor per channel over keys that may take traffic now."""

    def __init__(self) -> None:
        self._cursors: dict[int, itertools.count[int]] = {}
        # Keys this process saw fail, until when (epoch seconds): skipped
        # even before the shared state catches up.
        self.benched: dict[int, float] = {}

    def usable(self, key: KeySnap, now: float) -> bool:
        if key.state == "active":
            pass
        elif key.state == "cooling":
            if key.cooldown_until is not None and key.cooldown_until > now:
                return False
        else:
            return False
        until = self.benched.get(key.id)
        return until is None or until <= now

    def keys_in_order(self, channel: ChannelSnap) -> list[KeySnap]:
        """This channel's usable keys, starting at the next one in rotation."""
        now = time.time()
        keys = [k for k in channel.keys if self.usable(k, now)]
        if len(keys) <= 1:
            return keys
        cursor = self._cursors.get(channel.id)
        if cursor is None:
            cursor = self._cursors[channel.id] = itertools.count()
        start = next(cursor) % len(keys)
        return keys[start:] + keys[:start]

    def bench(self, key_id: int, seconds: float) -> None:
        self.benched[key_id] = time.time() + seconds
