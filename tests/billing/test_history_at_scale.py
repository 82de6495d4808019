"""History at scale, through the real gateway and the OpenAI emulator, in
both modes (service mode across two relay processes): after thousands of
requests the rollups equal the raw rows they summarise, the ledger equals
settled usage to the µUSD, and once retention has pruned every raw row,
balances, budgets and summaries are what they were."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, timedelta
from typing import Any

import aiohttp
import pytest
from django.utils import timezone

from tests.billing.events import assert_books_exact
from tests.gateway import wait_for, wait_for_key

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 2_000
MODELS = ("gpt-4o", "gpt-4o-mini")


async def fire(urls: list[str], plan: list[tuple[str, dict]]) -> list[int]:
    """Each (key, body) of ``plan`` once, 64 at a time, over ``urls``; the statuses."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one(i: int, key: str, body: dict) -> int:
            url = f"{urls[i % len(urls)]}/v1/chat/completions"
            async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as answer:
                await answer.read()
                return answer.status

        return list(await asyncio.gather(*(one(i, key, body) for i, (key, body) in enumerate(plan))))


@pytest.fixture
def world(relay_setup):
    """Teams red (with a monthly budget) and blue; four users, six tokens;
    the emulator's channel with two keys."""
    from billing import services
    from billing.models import Team
    from channels_app.services import add_keys

    red = Team.objects.create(name="red", budget=10_000_000, budget_period="month")
    blue = Team.objects.create(name="blue")
    users = [relay_setup["user"]]
    for name, team in (("rita", red), ("ron", red), ("bert", blue)):
        user, _ = services.create_user(username=name, team=team)
        services.topup(user, 10_000_000)
        users.append(user)
    users[0].budget, users[0].budget_period = 9_000_000, "day"
    users[0].save()
    keys = [relay_setup["key"]]
    for user in users:
        for n in range(1 if user.username != "rita" else 2):
            keys.append(services.create_token(user=user, name=f"t{n}")[1])
    add_keys(relay_setup["channel"], ["sk-upstream-good-2"])
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good-2", "ok")
    return {"users": users, "keys": keys, "teams": [red, blue]}


def requests_plan(keys: list[str]) -> list[tuple[str, dict]]:
    """Seeded mix: tokens, models, reply lengths, streams, and 1 in 20 a
    request the upstream refuses (400, logged at no cost)."""
    rng = random.Random(19)
    plan = []
    for _ in range(REQUESTS):
        body: dict = {
            "model": rng.choice(MODELS),
            "messages": [{"role": "user", "content": "hi " * rng.randint(1, 20)}],
            "max_tokens": 64,
            "stream_chunks": rng.randint(1, 12),
        }
        if rng.random() < 0.05:
            body["stream_chunks"] = -1  # the emulator answers 400
        elif rng.random() < 0.2:
            body["stream"] = True
        plan.append((rng.choice(keys), body))
    return plan


def rollups_from_rows() -> dict:
    """What the hour and day rollups must hold: the raw rows, summed per
    bucket and dimensions, here in Python."""
    from billing.models import LATENCY_BOUNDS_MS, UsageLog

    expected: dict = {}
    for row in UsageLog.objects.values():
        at = row["created_at"].astimezone(UTC)
        dims = (row["user_id"], row["team_id"], row["token_id"], row["model"], row["channel_id"], row["key_id"])
        bucket = next((i for i, bound in enumerate(LATENCY_BOUNDS_MS) if row["latency_ms"] <= bound), 9)
        for span, start in (("hour", at.replace(minute=0, second=0, microsecond=0)), ("day", at.date())):
            m = expected.setdefault((span, start, *dims), [0] * 17)
            values = (1, int(row["status"] >= 400), row["prompt_tokens"], row["completion_tokens"],
                      row["cached_tokens"], row["cost"], row["latency_ms"])  # fmt: skip
            for i, v in enumerate(values):
                m[i] += v
            m[7 + bucket] += 1
    return expected


def rollups_stored() -> dict:
    from billing.models import LATENCY_BUCKETS, UsageRollup
    from billing.rollups import MEASURES

    stored = {}
    r: dict[str, Any]
    for r in UsageRollup.objects.values():  # type: ignore[assignment]
        start = r["start"].astimezone(UTC)
        key = (r["span"], start if r["span"] == "hour" else start.date())
        dims = (r["user_id"], r["team_id"], r["token_id"], r["model"], r["channel_id"], r["key_id"])
        stored[(*key, *dims)] = [r[m] for m in MEASURES]
        assert len(MEASURES) == 7 + len(LATENCY_BUCKETS)
    return stored


def snapshot(api, operator_token: str, users) -> dict:
    """Everything that must survive pruning: balances, ledger, budgets (as
    /api/me/ shows them, the team's too), summaries."""
    from billing import services
    from billing.models import LedgerEntry, User

    client = api(operator_token)
    me = [api(services.issue_access_token(u)).get("/api/me/").json() for u in users]
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    windows = ["", f"&since={today:%Y-%m-%dT%H:%M:%SZ}", f"&until={today + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"]
    return {
        "balances": list(User.objects.order_by("pk").values_list("pk", "balance")),
        "ledger": list(LedgerEntry.objects.order_by("pk").values_list("pk", "amount", "balance_after")),
        "budgets": [{k: v for k, v in answer.items() if "budget" in k and "resets" not in k} for answer in me],
        "summaries": {
            (group, window): client.get(f"/api/usage/summary/?group_by={group}{window}").json()
            for group in ("user", "team", "token", "model", "channel")
            for window in windows
        },
    }


def run(world, urls, api, operator) -> None:
    from billing import budgets, services
    from billing.models import Team, UsageLog, User

    # when: thousands of requests
    statuses = asyncio.run(fire(urls, requests_plan(world["keys"])))
    # then: every answered request is on the books once
    assert set(statuses) <= {200, 400}, set(statuses)
    assert statuses.count(400) > 50
    wait_for(lambda: UsageLog.objects.count() == REQUESTS, timeout=30)
    assert rollups_stored() == rollups_from_rows()
    for user in world["users"]:
        assert_books_exact(user)
    report = services.reconcile()
    assert report.is_clean, report.__dict__
    assert report.hours_checked >= 1
    # budgets: counters equal the rows charged to each subject this period
    now = timezone.now()
    subjects: list[User | Team] = [*User.objects.all(), *Team.objects.all()]
    for subject in subjects:
        whose: dict[str, User | Team] = {"user": subject} if isinstance(subject, User) else {"team": subject}
        rows = UsageLog.objects.filter(**whose)
        start = budgets.period_start(subject.budget_period, now)
        assert budgets.spent_in_period(subject, now) == sum(
            rows.filter(created_at__gte=start).values_list("cost", flat=True)
        )
    before = snapshot(api, operator[1], world["users"])
    assert before["budgets"][0]["budget_spent_usd"] != "0.000000"  # alice: a daily budget of her own
    assert before["budgets"][1]["team_budget_spent_usd"] != "0.000000"  # rita: team red's
    # when: retention prunes every raw row (a cutoff past the newest one)
    later = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1, days=1)
    assert services.prune_usage_logs(days=1, now=later) == REQUESTS
    # then: nothing the books or the totals say has moved
    assert not UsageLog.objects.exists()
    assert snapshot(api, operator[1], world["users"]) == before
    assert services.reconcile().is_clean


@pytest.mark.embedded
def test_thousands_of_requests_then_pruned(world, gateway, api, operator):
    run(world, [gateway.url], api, operator)


@pytest.mark.service
def test_the_same_across_two_relay_processes(world, gateway, spawn_relay, api, operator):
    other = spawn_relay()
    for key in world["keys"]:
        wait_for_key(other.url, key)
    run(world, [gateway.url, other.url], api, operator)
