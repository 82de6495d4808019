"""billing.prune_usage_logs: old unbilled usage rows go, in small batches; charged rows stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import services, tasks
from billing.models import LedgerEntry, UsageLog
from billing.usage_sink import apply_usage
from tests.billing.events import usage_event

pytestmark = pytest.mark.django_db


def test_old_unbilled_rows_go_and_charged_or_recent_rows_stay(make_user, usage_row) -> None:
    # given
    bob, _ = make_user("bob")
    services.topup(bob, 1_000_000)
    now = timezone.now()
    old = (now - timedelta(days=91)).isoformat()
    old_error = usage_row(bob, at=old, status=502, cost=0)
    old_free = usage_row(bob, at=old, model="llama3", cost=0)
    event = usage_event(bob.pk, 1_000, request_id="charged-long-ago")
    event.created_at = (now - timedelta(days=400)).timestamp()
    apply_usage([event])
    recent = usage_row(bob, at=(now - timedelta(days=89)).isoformat(), cost=0)
    # when
    deleted = tasks.prune_usage_logs.apply(kwargs={"days": 90}).get()
    # then
    assert deleted == 2
    assert not UsageLog.objects.filter(pk__in=[old_error.pk, old_free.pk]).exists()
    assert set(UsageLog.objects.values_list("request_id", flat=True)) == {"charged-long-ago", recent.request_id}
    assert LedgerEntry.objects.filter(usage__request_id="charged-long-ago").count() == 1
    bob.refresh_from_db()
    assert bob.balance == 999_000


def test_rows_are_deleted_in_bounded_batches(make_user, usage_row) -> None:
    # given: five old rows, batches of two
    bob, _ = make_user("bob")
    old = (timezone.now() - timedelta(days=31)).isoformat()
    for _ in range(5):
        usage_row(bob, at=old)
    # when
    with CaptureQueriesContext(connection) as queries:
        deleted = services.prune_usage_logs(days=30, batch=2)
    # then
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "billing_usagelog"')]
    assert deleted == 5
    assert len(deletes) == 3
    assert not UsageLog.objects.exists()


def test_a_batch_never_exceeds_five_thousand(make_user, usage_row) -> None:
    # given
    bob, _ = make_user("bob")
    usage_row(bob, at=(timezone.now() - timedelta(days=2)).isoformat())
    # when
    with CaptureQueriesContext(connection) as queries:
        services.prune_usage_logs(days=1, batch=1_000_000)
    # then
    selects = [q["sql"] for q in queries.captured_queries if "LIMIT" in q["sql"]]
    assert selects and all(s.rstrip().endswith("LIMIT 5000") for s in selects)


def test_retention_below_a_day_is_refused() -> None:
    with pytest.raises(ValueError):
        services.prune_usage_logs(days=0)
