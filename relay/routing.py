"""Which channels serve a request: highest priority tier first; inside a
tier, weighted random order. (Keys inside a channel: relay/keypool.py.)"""

from __future__ import annotations

import random
from collections.abc import Iterator

from relay.snapshot import ChannelSnap

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
