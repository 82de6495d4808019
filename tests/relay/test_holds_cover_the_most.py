"""Balances never go negative under concurrency: the hold covers the most a
request can cost (n, best_of, images), and a request that still costs more
than its hold overdraws by at most its own overdraft (issue 13, defect 2)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Sum

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _fund(user, micro: int) -> None:
    from billing import services
    from billing.models import User

    services.adjust(User.objects.get(pk=user.pk), micro - User.objects.get(pk=user.pk).balance, actor=user, note="t")


def _burst(gateway, key: str, body: dict, count: int) -> list[int]:
    def one(_: int) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        return requests.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=20).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        return list(pool.map(one, range(count)))


def _settled(count: int) -> None:
    from billing.models import UsageLog

    wait_for(lambda: UsageLog.objects.count() == count)


def test_n_choices_are_held_so_concurrent_requests_cannot_overdraw(relay_setup, gateway):
    from billing.models import LedgerEntry, User

    # given: a balance for about two requests of 3 choices × 20 tokens
    user = relay_setup["user"]
    _fund(user, 100)
    gateway.reload()
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 20,
        "n": 3,
        "stream_chunks": 20,
    }
    # when: 40 of them at once
    statuses = _burst(gateway, relay_setup["key"], body, 40)
    # then: some served, the rest refused (402), the balance never below zero
    served = statuses.count(200)
    assert served >= 1 and statuses.count(402) == 40 - served
    _settled(served)
    balance = User.objects.get(pk=user.pk).balance
    assert balance >= 0
    assert balance == LedgerEntry.objects.filter(user=user).aggregate(s=Sum("amount"))["s"]


def test_an_upstream_that_ignores_max_tokens_overdraws_by_one_request_at_most(relay_setup, gateway):
    from billing.models import LedgerEntry, UsageLog, User

    # given: the upstream answers 200 tokens whatever max_tokens says
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", "ignore_limits")
    user = relay_setup["user"]
    _fund(user, 100)
    gateway.reload()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    body["stream_chunks"] = 200
    # when
    statuses = _burst(gateway, relay_setup["key"], body, 30)
    # then: the balance ends above minus one request's overdraft; what could not be charged is on record
    served = statuses.count(200)
    _settled(served)
    rows = list(UsageLog.objects.all())
    worst = max(r.cost + r.written_off - r.held for r in rows)
    balance = User.objects.get(pk=user.pk).balance
    assert balance >= -worst
    # every request's real cost is on record: charged plus written off
    assert {r.cost + r.written_off for r in rows} == {rows[0].cost + rows[0].written_off}
    assert all(r.cost + r.written_off > r.held for r in rows)
    # and the books stay exact: ledger = top-ups − charges = usage charged
    assert balance == LedgerEntry.objects.filter(user=user).aggregate(s=Sum("amount"))["s"]
    charged = sum(r.cost for r in rows)
    assert charged == -LedgerEntry.objects.filter(user=user, kind="charge").aggregate(s=Sum("amount"))["s"]
