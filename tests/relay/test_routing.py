"""Selection spreads traffic by weight across channels and evenly across keys."""

from __future__ import annotations

import time
from collections import Counter

from relay.keypool import KeyPool
from relay.routing import candidate_channels
from relay.snapshot import ChannelSnap, KeySnap


def channel(id: int, weight: int = 1, priority: int = 0, keys: int = 1) -> ChannelSnap:
    return ChannelSnap(
        id=id,
        name=f"c{id}",
        type="openai",
        protocol="openai",
        local=False,
        base_url="http://x",
        models=frozenset(),
        model_mapping={},
        groups=frozenset({"default"}),
        priority=priority,
        weight=weight,
        config={},
        proxy_url=None,
        include_usage=True,
        connect_timeout=1,
        first_byte_timeout=1,
        idle_timeout=1,
        keys=tuple(KeySnap(id=id * 100 + k, channel_id=id, secret="s", state="active") for k in range(keys)),
    )


def test_weights_3_to_1_within_3_percent_over_10000():
    tier = (channel(1, weight=3), channel(2, weight=1))
    first = Counter(next(candidate_channels((tier,))).id for _ in range(10_000))
    assert abs(first[1] / 10_000 - 0.75) <= 0.03
    assert abs(first[2] / 10_000 - 0.25) <= 0.03


def test_lower_tier_only_after_higher_one():
    high, low = (channel(1, priority=10),), (channel(2),)
    assert [c.id for c in candidate_channels((high, low))] == [1, 2]


def test_keys_even_within_3_percent_over_10000():
    pool = KeyPool()
    c = channel(1, keys=4)
    picks = Counter(pool.keys_in_order(c)[0].id for _ in range(10_000))
    for key in c.keys:
        assert abs(picks[key.id] / 10_000 - 0.25) <= 0.03


def test_rpm_capped_key_without_headroom_is_skipped():
    pool = KeyPool()
    capped = KeySnap(id=1, channel_id=1, secret="s", state="active", rpm_limit=2)
    free = KeySnap(id=2, channel_id=1, secret="s", state="active")
    for _ in range(2):
        pool.used(capped, ok=True, latency_ms=1)
    now = time.time()
    assert not pool.usable(capped, now)
    assert pool.usable(free, now)
