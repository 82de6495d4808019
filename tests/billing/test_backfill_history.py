"""An upgraded database: the migration to rollups keeps every usage row and
charge; backfill_history rolls the old rows up (teams, rollups, budget
counters) in resumable chunks with a progress bar; afterwards they prune
like new ones and the books prove out."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("billing", "0009_audio_prices_and_overdrafts")]


def migrate(targets=None) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return MigrationExecutor(connection)


@pytest.fixture
def upgraded(transactional_db):
    """A database as 0009 left it — usage rows, a per-request charge for each
    priced one, the beat's default prune entry — migrated to the latest."""
    old = (
        migrate(BEFORE).loader.project_state([*BEFORE, ("django_celery_beat", "0019_alter_periodictasks_options")]).apps
    )
    try:
        group = old.get_model("billing", "Group").objects.get_or_create(name="default")[0]
        team = old.get_model("billing", "Team").objects.create(name="red", budget=5_000_000, budget_period="month")
        User = old.get_model("billing", "User")
        rita = User.objects.create(username="rita", group=group, team=team, balance=10_000_000)
        UsageLog, LedgerEntry = old.get_model("billing", "UsageLog"), old.get_model("billing", "LedgerEntry")
        now = timezone.now()
        balance = rita.balance
        LedgerEntry.objects.create(user=rita, kind="topup", amount=balance, balance_after=balance)
        for i in range(7):
            at = now - timedelta(days=100) if i < 3 else now - timedelta(minutes=i)
            cost = 100 * (i + 1) if i != 4 else 0
            row = UsageLog.objects.create(
                request_id=f"old-{i}", created_at=at, user=rita, endpoint="chat", model="gpt-4o", status=200,
                prompt_tokens=10, completion_tokens=i, cost=cost, latency_ms=50 * i,
            )  # fmt: skip
            if cost:
                balance -= cost
                LedgerEntry.objects.create(
                    user=rita, kind="charge", amount=-cost, balance_after=balance, usage=row, note="gpt-4o"
                )
        User.objects.filter(pk=rita.pk).update(balance=balance)
        interval = old.get_model("django_celery_beat", "IntervalSchedule").objects.create(
            every=86_400, period="seconds"
        )
        old.get_model("django_celery_beat", "PeriodicTask").objects.create(
            name="billing: prune usage logs", task="billing.prune_usage_logs", interval=interval, kwargs='{"days": 90}'
        )
    finally:
        migrate()
    from billing.models import User as NewUser

    return NewUser.objects.get(username="rita")


def test_the_migration_keeps_every_row_and_charge(upgraded) -> None:
    from django_celery_beat.models import PeriodicTask

    from billing.models import LedgerEntry, UsageLog

    # then: nothing lost, nothing rolled up yet; the prune entry defers to the setting
    assert UsageLog.objects.count() == 7
    assert UsageLog.objects.filter(batch__isnull=True, team__isnull=True).count() == 7
    charges = LedgerEntry.objects.filter(kind="charge")
    assert charges.count() == 6
    assert sorted(charges.values_list("usage__cost", flat=True)) == sorted(-c.amount for c in charges)
    assert PeriodicTask.objects.get(name="billing: prune usage logs").kwargs == "{}"


def test_backfill_rolls_up_resumably_and_once(upgraded) -> None:
    from billing import budgets, services
    from billing.models import Team, UsageLog, UsageRollup
    from tests.billing.events import assert_books_exact

    rita = upgraded

    # given: a back-fill interrupted after its first chunk of 3 rows
    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        services.backfill_history(chunk=3, progress=interrupt)
    assert UsageLog.objects.filter(batch__isnull=True).count() == 4
    # when: the command runs again (and then once more)
    out = io.StringIO()
    call_command("backfill_history", chunk=3, stdout=out)
    again = io.StringIO()
    call_command("backfill_history", stdout=again)
    # then: every row rolled up once, with the team it has now; a progress bar was shown
    assert "4 / 4 usage rows (100%)" in out.getvalue()
    assert again.getvalue().startswith("0 usage row(s) rolled up")
    assert not UsageLog.objects.filter(batch__isnull=True).exists()
    assert set(UsageLog.objects.values_list("team__name", flat=True)) == {"red"}
    rows = UsageLog.objects.all()
    for span in ("hour", "day"):
        assert sum(UsageRollup.objects.filter(span=span).values_list("requests", flat=True)) == 7
        assert sum(UsageRollup.objects.filter(span=span).values_list("cost", flat=True)) == sum(
            rows.values_list("cost", flat=True)
        )
    assert_books_exact(rita)
    # budgets count this month's old spending, the user's and the team's
    now = timezone.now()
    month = budgets.period_start("month", now)
    this_month = sum(rows.filter(created_at__gte=month).values_list("cost", flat=True))
    rita.budget_period = "month"
    assert budgets.spent_in_period(rita, now) == this_month
    assert budgets.spent_in_period(Team.objects.get(name="red"), now) == this_month
    # and the old rows prune like new ones; the books still prove out
    assert services.reconcile().is_clean
    assert services.prune_usage_logs(days=90) == 3
    assert services.reconcile().is_clean


def test_bootstrap_backfills_by_itself(upgraded) -> None:
    from billing.models import UsageLog

    # when
    call_command("bootstrap", stdout=io.StringIO())
    # then
    assert not UsageLog.objects.filter(batch__isnull=True).exists()
