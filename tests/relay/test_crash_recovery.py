"""Service mode: a relay process killed mid-load loses no money. After
billing.settle_usage and billing.reconcile, every completed request is
charged exactly once, balances equal ledger sums, and the Redis mirror
equals the database again (the dead process's holds are given back)."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta

import aiohttp
import pytest
from django.utils import timezone

from tests.billing.events import assert_books_exact
from tests.gateway import wait_for, wait_for_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.service]

BODY = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


async def load(urls: list[str], key: str, n: int, kill=None) -> list[tuple[int, str]]:
    """n requests spread over urls; (status, request id) each, status 0 if the connection died."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> tuple[int, str]:
            try:
                async with session.post(
                    f"{urls[i % len(urls)]}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
                ) as r:
                    await r.read()
                    return r.status, r.headers.get("X-Request-Id", "")
            except aiohttp.ClientError:
                return 0, ""

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        if kill is not None:
            await asyncio.sleep(0.3)
            kill()
        return list(await asyncio.gather(*tasks))


def test_sigkill_during_load_then_reconcile(relay_setup, gateway, spawn_relay):
    import redis
    from django.conf import settings

    from billing import history, services
    from billing.mirror import names
    from billing.models import LedgerEntry, UsageLog, User

    # given: a slow upstream (requests stay in flight) and a second relay process
    emulator = relay_setup["emulator"]
    emulator.set_key_behaviour("sk-upstream-good", "slow", delay=0.6)
    user, key = relay_setup["user"], relay_setup["key"]
    victim = spawn_relay()
    wait_for_key(victim.url, key)
    urls = [gateway.url, victim.url]
    first = asyncio.run(load(urls, key, 20))
    assert [s for s, _ in first] == [200] * 20
    # when: the second process is killed while 40 requests are in flight
    second = asyncio.run(load(urls, key, 40, kill=lambda: os.kill(victim.proc.pid, signal.SIGKILL)))
    completed = [rid for s, rid in first + second if s == 200]
    assert 20 + 10 <= len(completed) < 60  # the gateway's half completed; the victim's did not

    # The victim may have read some of its events off the stream before it died:
    # they wait, pending, for billing.settle_usage (idempotent), as beat runs it.
    def all_written() -> bool:
        services.settle_stranded_usage(min_idle_ms=0)
        return UsageLog.objects.filter(request_id__in=completed).count() == len(completed)

    wait_for(all_written, timeout=15, interval=0.5)
    report = services.reconcile(stale_hold_seconds=0)
    # the victim's requests had gone upstream: reconcile queued their charges at the estimate
    services.settle_stranded_usage(min_idle_ms=0)
    # then: every completed request charged exactly once
    rows = UsageLog.objects.filter(request_id__in=completed)
    assert rows.count() == len(completed)
    assert_books_exact(user)  # each batch's charge = its rows' cost; ledger = rows = rollups
    # balances equal ledger sums, and top-ups minus settled usage
    user = User.objects.get(pk=user.pk)
    ledger = sum(LedgerEntry.objects.filter(user=user).values_list("amount", flat=True))
    all_costs = sum(UsageLog.objects.filter(user=user).values_list("cost", flat=True))
    assert user.balance == ledger == 10_000_000 - all_costs
    assert report.is_clean, report.__dict__
    # and once retention has pruned every row, the books still prove out
    summary = history.summary("user", since=None, until=None)
    total, later = UsageLog.objects.count(), timezone.now() + timedelta(days=2)
    assert services.prune_usage_logs(days=1, now=later) == total
    assert not UsageLog.objects.exists()
    assert User.objects.get(pk=user.pk).balance == user.balance
    assert history.summary("user", since=None, until=None).results == summary.results
    assert services.reconcile(stale_hold_seconds=0, now=later).is_clean
    # the dead process's holds were settled (charged at the estimate: they had
    # gone upstream): the mirror equals the database
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert report.stale_holds_released >= 1
    assert client.zcard(names().holds) == 0
    mirror = client.get(names().balance(user.pk))
    assert mirror is None or int(mirror) == user.balance
