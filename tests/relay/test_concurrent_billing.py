"""Holds under concurrency: a balance is never overdrawn, most of it is
spendable, and afterwards ledger = balance = top-ups − settled usage."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.gateway import wait_for, wait_for_key

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi there"}]}
REQUESTS = 200
COVERS = 50


async def fire(urls: list[str], key: str, n: int) -> list[int]:
    """n requests at once, spread round-robin over the relay URLs."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> int:
            async with session.post(
                f"{urls[i % len(urls)]}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
            ) as r:
                await r.read()
                return r.status

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def cost_of_one(relay_setup, gateway) -> int:
    """Measure one request's real cost with a separate, rich user."""
    from billing import services
    from billing.models import UsageLog

    rich, _ = services.create_user(username="rich")
    services.topup(rich, 10_000_000)
    _, key = services.create_token(user=rich, name="probe")
    gateway.reload()
    assert asyncio.run(fire([gateway.url], key, 1)) == [200]
    return wait_for(lambda: UsageLog.objects.filter(user=rich).values_list("cost", flat=True).first())


def run_and_check(relay_setup, gateway, urls):
    from billing import services
    from billing.models import LedgerEntry, UsageLog, User

    # given: a user whose balance covers ~50 requests
    cost = cost_of_one(relay_setup, gateway)
    user, _ = services.create_user(username="bounded")
    services.topup(user, cost * COVERS)
    _, key = services.create_token(user=user, name="load")
    gateway.reload()
    for url in urls:  # other processes see new tokens on their next poll (≤ 1 s)
        wait_for_key(url, key)
    # when: 200 at once
    statuses = asyncio.run(fire(urls, key, REQUESTS))
    # then
    served = statuses.count(200)
    assert set(statuses) <= {200, 402}, statuses
    assert served >= 35, f"only {served} served"
    wait_for(lambda: UsageLog.objects.filter(user=user).count() == served, timeout=15)
    user.refresh_from_db()
    charged = sum(UsageLog.objects.filter(user=user).values_list("cost", flat=True))
    ledger = sum(LedgerEntry.objects.filter(user=user).values_list("amount", flat=True))
    assert user.balance >= 0
    assert ledger == user.balance == cost * COVERS - charged
    assert User.objects.get(pk=user.pk).balance == cost * COVERS - served * cost


def test_200_concurrent_requests_against_a_balance_for_50(relay_setup, gateway):
    run_and_check(relay_setup, gateway, [gateway.url])


@pytest.mark.service
def test_the_same_across_three_relay_processes(relay_setup, gateway, spawn_relay):
    others = [spawn_relay(), spawn_relay()]
    run_and_check(relay_setup, gateway, [gateway.url] + [p.url for p in others])
