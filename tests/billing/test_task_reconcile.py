"""billing.reconcile: balance = ledger sum = settled usage, fixed and reported;
in service mode, stale holds in the Redis mirror are released."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import services, tasks
from billing.models import BudgetSpend, LedgerEntry, ReconcileReport, UsageLog, UsageRollup, User
from billing.usage_sink import apply_usage
from tests.billing.events import usage_event


@pytest.mark.django_db
def test_a_drifted_balance_is_set_back_to_its_ledger_sum_and_reported(make_user) -> None:
    # given: bob's column lost 1234 µUSD somewhere; ann is right
    bob, _ = make_user("bob")
    ann, _ = make_user("ann")
    services.topup(bob, 5_000_000)
    services.topup(ann, 2_000_000)
    apply_usage([usage_event(bob.pk, 300_000)])
    User.objects.filter(pk=bob.pk).update(balance=4_698_766)
    # when
    report_id = tasks.reconcile.apply().get()
    # then
    report = ReconcileReport.objects.get(pk=report_id)
    assert (report.users_checked, report.drifted_users, report.is_clean) == (2, 1, False)
    assert report.drift == [
        {"user_id": bob.pk, "username": "bob", "balance": 4_698_766, "ledger_sum": 4_700_000, "drift": -1_234}
    ]
    bob.refresh_from_db()
    ann.refresh_from_db()
    assert (bob.balance, ann.balance) == (4_700_000, 2_000_000)
    assert not LedgerEntry.objects.filter(kind="adjustment").exists()  # the ledger is the truth; nothing written


@pytest.mark.django_db
def test_a_clean_ledger_gives_a_clean_report(make_user) -> None:
    # given
    bob, _ = make_user("bob")
    services.topup(bob, 1_000_000)
    apply_usage([usage_event(bob.pk, 1), usage_event(bob.pk, 0)])
    # when
    report = services.reconcile()
    # then
    assert (report.users_checked, report.drifted_users, report.usage_drifted_users) == (1, 0, 0)
    assert (report.hours_checked, report.rollup_drifted_hours, report.budget_drifted, report.unrolled_usage) == (
        1,
        0,
        0,
        0,
    )
    assert report.is_clean and report.drift == report.usage_drift == report.rollup_drift == []


@pytest.mark.django_db
def test_a_charge_unlike_its_usage_is_reported(make_user) -> None:
    # given: bob's charge lost 1 µUSD (balance kept in step with the ledger)
    bob, _ = make_user("bob")
    apply_usage([usage_event(bob.pk, 700), usage_event(bob.pk, 300)])
    LedgerEntry.objects.filter(kind="charge").update(amount=-999)
    User.objects.filter(pk=bob.pk).update(balance=-999)
    # when
    report = services.reconcile()
    # then
    assert (report.drifted_users, report.usage_drifted_users, report.is_clean) == (0, 1, False)
    assert report.usage_drift == [{"user_id": bob.pk, "username": "bob", "charged": 999, "settled": 1_000, "drift": -1}]


@pytest.mark.django_db
def test_usage_rows_nobody_charged_are_reported_until_rolled_up(make_user) -> None:
    # given: a priced row written outside settlement (as before rollups existed) and never charged
    bob, _ = make_user("bob")
    UsageLog.objects.create(
        request_id="legacy", created_at=timezone.now(), user=bob, endpoint="chat", model="gpt-4o", status=200, cost=500
    )
    # when
    report = services.reconcile()
    # then
    assert (report.unrolled_usage, report.usage_drifted_users) == (1, 1)
    assert report.usage_drift[0]["charged"] == 0 and report.usage_drift[0]["settled"] == 500


@pytest.mark.django_db
def test_rollups_unlike_their_rows_are_reported(make_user) -> None:
    # given: one hour's rollup of bob counts a request too many
    bob, _ = make_user("bob")
    apply_usage([usage_event(bob.pk, 10), usage_event(bob.pk, 20)])
    UsageRollup.objects.filter(span="hour").update(requests=3)
    # when
    report = services.reconcile()
    # then: the hour differs from its rows, and its day from its hours
    assert (report.hours_checked, report.rollup_drifted_hours, report.is_clean) == (1, 2, False)
    hour, day = report.rollup_drift
    assert (hour["span"], hour["user_id"], hour["rollups"]["requests"], hour["counted"]["requests"]) == (
        "hour",
        bob.pk,
        3,
        2,
    )
    assert (day["span"], day["rollups"]["requests"], day["counted"]["requests"]) == ("day", 2, 3)


@pytest.mark.django_db
def test_a_budget_counter_unlike_the_rollups_is_set_back(make_user) -> None:
    # given: bob's monthly counter lost 5 µUSD
    from billing.budgets import spent_in_period

    bob, _ = make_user("bob")
    apply_usage([usage_event(bob.pk, 1_000)])
    BudgetSpend.objects.filter(subject="user", period="month").update(spent=995)
    # when
    report = services.reconcile()
    # then
    assert report.budget_drifted == 1
    assert report.budget_drift[0] | {"start": None} == {
        "subject": "user", "subject_id": bob.pk, "period": "month", "start": None, "counter": 995, "rollups": 1_000
    }  # fmt: skip
    bob.budget_period = "month"
    assert spent_in_period(bob, timezone.now()) == 1_000
    again = services.reconcile()
    assert again.is_clean, again.__dict__


@pytest.mark.django_db
def test_the_books_still_prove_out_once_every_row_is_pruned(make_user) -> None:
    # given: charged usage, reconciled, then pruned away
    bob, _ = make_user("bob")
    services.topup(bob, 1_000_000)
    apply_usage([usage_event(bob.pk, 1_234), usage_event(bob.pk, 66)])
    apply_usage([usage_event(bob.pk, 700)])
    assert services.reconcile().is_clean
    later = timezone.now() + timedelta(days=2)
    assert services.prune_usage_logs(days=1, now=later) == 3
    # when: two days later
    report = services.reconcile(now=later)
    # then: balance = ledger = rollups, to the µUSD, with no raw row left
    assert not UsageLog.objects.exists()
    assert report.is_clean and report.hours_checked == 0
    bob.refresh_from_db()
    assert bob.balance == 1_000_000 - 2_000


@pytest.mark.django_db
def test_reports_are_read_only_in_the_admin(client, operator) -> None:
    # given
    client.force_login(operator[0])
    report = services.reconcile()
    # when
    listing = client.get("/admin/billing/reconcilereport/")
    detail = client.get(f"/admin/billing/reconcilereport/{report.pk}/change/")
    add = client.get("/admin/billing/reconcilereport/add/")
    # then
    assert listing.status_code == 200 and detail.status_code == 200
    assert add.status_code == 403
    assert 'name="drifted_users"' not in detail.content.decode()


# -- service mode: the Redis mirror ------------------------------------------------


@pytest.fixture
def leaked(make_user, redis_client):
    """bob: $1 in the database, a mirror short by a 300,000 µUSD hold nobody will
    release, and a token whose used mirror carries the same hold."""
    from billing.mirror import names

    bob, _ = make_user("bob")
    services.topup(bob, 1_000_000)
    token, _ = services.create_token(user=bob, name="t", quota=2_000_000)
    redis_client.set(names().balance(bob.pk), 700_000)
    redis_client.set(names().used(token.pk), 300_000)
    return bob, token


def mirror_of(redis_client, user: User) -> int | None:
    from billing.mirror import names

    value = redis_client.get(names().balance(user.pk))
    return None if value is None else int(value)


@pytest.mark.service
@pytest.mark.django_db
def test_a_stale_hold_is_released_after_the_mirror_stood_still_long_enough(leaked, redis_client) -> None:
    # given
    from billing.mirror import names

    bob, token = leaked
    t0 = timezone.now()
    # when
    first = services.reconcile(now=t0)
    early = services.reconcile(now=t0 + timedelta(seconds=899))
    held_until_then = mirror_of(redis_client, bob)
    late = services.reconcile(now=t0 + timedelta(seconds=900))
    # then
    assert (first.mirrors_checked, first.mirrors_released, early.mirrors_released) == (1, [], [])
    assert held_until_then == 700_000
    assert late.mirrors_released == [{"user_id": bob.pk, "mirror": 700_000, "balance": 1_000_000}]
    assert mirror_of(redis_client, bob) is None  # the relay re-seeds it from the database
    assert redis_client.get(names().used(token.pk)) is None


@pytest.mark.service
@pytest.mark.django_db
def test_a_mirror_that_moves_is_never_released(leaked, redis_client) -> None:
    # given: bob keeps making requests, so his mirror changes between runs
    from billing.mirror import names

    bob, _ = leaked
    t0 = timezone.now()
    services.reconcile(now=t0)
    redis_client.decrby(names().balance(bob.pk), 5_000)  # a new hold in flight
    # when
    later = services.reconcile(now=t0 + timedelta(seconds=900))
    much_later = services.reconcile(now=t0 + timedelta(seconds=1_799))
    # then: the clock restarted when the mirror moved
    assert (later.mirrors_released, much_later.mirrors_released) == ([], [])
    assert mirror_of(redis_client, bob) == 695_000


@pytest.mark.service
@pytest.mark.django_db
def test_a_user_with_usage_on_the_stream_is_left_alone(leaked, redis_client) -> None:
    # given: a settled request of bob's is still queued for the database
    from billing.mirror import names
    from relay.ports import encode_event

    bob, _ = leaked
    redis_client.xadd(names().usage_stream, {"e": encode_event(usage_event(bob.pk, 300_000))})
    t0 = timezone.now()
    # when
    first = services.reconcile(now=t0)
    later = services.reconcile(now=t0 + timedelta(seconds=3_600))
    # then
    assert (first.mirrors_pending, later.mirrors_pending) == (1, 1)
    assert later.mirrors_released == []
    assert mirror_of(redis_client, bob) == 700_000


@pytest.mark.service
@pytest.mark.django_db
def test_a_mirror_in_step_with_the_database_is_kept(make_user, redis_client) -> None:
    # given
    from billing.mirror import names

    bob, _ = make_user("bob")
    services.topup(bob, 1_000_000)
    redis_client.set(names().balance(bob.pk), 1_000_000)
    t0 = timezone.now()
    # when
    services.reconcile(now=t0)
    report = services.reconcile(now=t0 + timedelta(days=1))
    # then
    assert (report.mirrors_checked, report.mirrors_released) == (1, [])
    assert mirror_of(redis_client, bob) == 1_000_000


@pytest.mark.service
@pytest.mark.django_db
def test_release_is_a_compare_and_delete(leaked, redis_client) -> None:
    # given
    from billing import mirror

    bob, token = leaked
    # when
    stale_view = mirror.release(bob.pk, 690_000, [token.pk])
    kept = mirror_of(redis_client, bob)
    current_view = mirror.release(bob.pk, 700_000, [token.pk])
    # then
    assert (stale_view, kept, current_view) == (False, 700_000, True)
    assert mirror_of(redis_client, bob) is None


@pytest.mark.service
@pytest.mark.django_db
def test_a_mirror_of_a_deleted_user_is_dropped(redis_client) -> None:
    # given
    from billing.mirror import names

    redis_client.set(names().balance(424_242), 5)
    # when
    report = services.reconcile()
    # then
    assert report.mirrors_checked == 1
    assert redis_client.get(names().balance(424_242)) is None
