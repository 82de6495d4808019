"""billing.prune_usage_logs: raw usage rows older than the retention go, in
small batches, once rolled up; balances, budgets and totals stay as they were."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import history, services, tasks
from billing.budgets import spent_in_period
from billing.models import BudgetSpend, HistoryState, LedgerEntry, UsageLog, UsageRollup

pytestmark = pytest.mark.django_db


def test_old_rows_go_and_the_books_and_totals_stay(make_user, usage_row) -> None:
    # given: bob's charged, errored and free requests, long ago and lately
    bob, _ = make_user("bob", role="operator")
    services.topup(bob, 1_000_000)
    now = timezone.now()
    old = (now - timedelta(days=91)).isoformat()
    usage_row(bob, at=old, cost=1_000)
    usage_row(bob, at=old, status=502, cost=0)
    usage_row(bob, at=old, model="llama3", cost=0)
    recent = usage_row(bob, at=(now - timedelta(days=89)).isoformat(), cost=250)
    today = usage_row(bob, at=now.isoformat(), cost=5)
    bob.refresh_from_db()
    balance, charges = bob.balance, list(LedgerEntry.objects.order_by("pk").values_list("pk", "amount"))
    summary = history.summary("model", since=None, until=None)
    bob.budget_period = "month"
    spent = spent_in_period(bob, now)
    # when
    deleted = tasks.prune_usage_logs.apply(kwargs={"days": 90}).get()
    # then: the three old rows are gone, nothing else changed
    assert deleted == 3
    assert set(UsageLog.objects.values_list("request_id", flat=True)) == {recent.request_id, today.request_id}
    bob.refresh_from_db()
    assert bob.balance == balance == 1_000_000 - 1_255
    assert list(LedgerEntry.objects.order_by("pk").values_list("pk", "amount")) == charges
    assert history.summary("model", since=None, until=None).results == summary.results
    assert spent_in_period(bob, now) == spent
    cutoff = (now - timedelta(days=90)).replace(minute=0, second=0, microsecond=0)
    assert HistoryState.objects.get().pruned_before == cutoff
    assert services.reconcile().is_clean


def test_rows_not_rolled_up_yet_are_kept(make_user) -> None:
    # given: an old row settled before rollups existed (no batch)
    bob, _ = make_user("bob")
    UsageLog.objects.create(
        request_id="legacy", created_at=timezone.now() - timedelta(days=400), user=bob, endpoint="chat",
        model="gpt-4o", status=200, cost=10,
    )  # fmt: skip
    # when
    deleted = services.prune_usage_logs(days=90)
    # then: it waits for backfill_history
    assert deleted == 0 and UsageLog.objects.filter(request_id="legacy").exists()


def test_without_days_the_retention_setting_applies(make_user, usage_row, settings) -> None:
    # given
    settings.ONEPROXY_USAGE_RETENTION_DAYS = 30
    bob, _ = make_user("bob")
    now = timezone.now()
    usage_row(bob, at=(now - timedelta(days=31)).isoformat())
    kept = usage_row(bob, at=(now - timedelta(days=29)).isoformat())
    # when
    deleted = tasks.prune_usage_logs.apply().get()
    # then
    assert deleted == 1
    assert list(UsageLog.objects.values_list("pk", flat=True)) == [kept.pk]


def test_counters_of_long_ended_periods_go_with_them(make_user, usage_row) -> None:
    # given: spending a year ago and now
    bob, _ = make_user("bob")
    now = timezone.now()
    usage_row(bob, at=(now - timedelta(days=365)).isoformat(), cost=7)
    usage_row(bob, at=now.isoformat(), cost=9)
    # when
    services.prune_usage_logs(days=90)
    # then: only the current periods' counters are left; the rollups keep the year-old spending
    assert set(BudgetSpend.objects.values_list("spent", flat=True)) == {9}
    assert sorted(UsageRollup.objects.filter(span="day").values_list("cost", flat=True)) == [7, 9]


def test_rows_are_deleted_in_bounded_batches(make_user, usage_row) -> None:
    # given: five old rows, batches of two
    bob, _ = make_user("bob")
    old = (timezone.now() - timedelta(days=31)).isoformat()
    for _ in range(5):
        usage_row(bob, at=old)
    progress: list[int] = []
    # when
    with CaptureQueriesContext(connection) as queries:
        deleted = services.prune_usage_logs(days=30, batch=2, progress=progress.append)
    # then
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "billing_usagelog"')]
    assert deleted == 5
    assert len(deletes) == 3
    assert progress == [2, 4, 5]
    assert not UsageLog.objects.exists()


def test_a_batch_never_exceeds_five_thousand(make_user, usage_row) -> None:
    # given
    bob, _ = make_user("bob")
    usage_row(bob, at=(timezone.now() - timedelta(days=2)).isoformat())
    # when
    with CaptureQueriesContext(connection) as queries:
        services.prune_usage_logs(days=1, batch=1_000_000)
    # then
    selects = [q["sql"] for q in queries.captured_queries if "LIMIT" in q["sql"] and "billing_usagelog" in q["sql"]]
    assert selects and all(s.rstrip().endswith("LIMIT 5000") for s in selects)


def test_retention_below_a_day_is_refused() -> None:
    with pytest.raises(ValueError):
        services.prune_usage_logs(days=0)


def test_tokens_channels_and_keys_used_before_the_retention_are_still_only_hidden(make_user, usage_row) -> None:
    # given: their only usage is pruned; the rollups still point at them
    from billing.models import Token
    from channels_app import services as channel_services
    from channels_app.models import Channel, ChannelKey

    bob, _ = make_user("bob")
    token, _ = services.create_token(user=bob, name="old")
    channel = Channel.objects.create(name="old", type="openai")
    (key,) = channel_services.add_keys(channel, ["sk-upstream-old-0000000001"])
    usage_row(bob, at=(timezone.now() - timedelta(days=200)).isoformat(), token=token, channel=channel, key=key)
    assert services.prune_usage_logs(days=90) == 1
    # when
    services.delete_token(token)
    channel_services.delete_key(key)
    channel_services.delete_channel(channel)
    # then
    assert Token.objects.get(pk=token.pk).deleted_at is not None
    assert ChannelKey.objects.get(pk=key.pk).deleted_at is not None
    assert Channel.objects.get(pk=channel.pk).deleted_at is not None
