"""Budget periods (UTC day, ISO week, calendar month), spending in them, and
what /api/me/ and the admin show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing.budgets import budget_status, period_end, period_start, spent_in_period
from billing.models import Team


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        # a day runs from UTC midnight to the next
        ("day", "2025-03-05 00:00:00", "2025-03-05 00:00:00", "2025-03-06 00:00:00"),
        ("day", "2025-03-05 23:59:59.999999", "2025-03-05 00:00:00", "2025-03-06 00:00:00"),
        ("day", "2024-12-31 12:00:00", "2024-12-31 00:00:00", "2025-01-01 00:00:00"),
        # an ISO week from Monday 00:00 (2025-03-03 is a Monday)
        ("week", "2025-03-03 00:00:00", "2025-03-03 00:00:00", "2025-03-10 00:00:00"),
        ("week", "2025-03-09 23:59:59.999999", "2025-03-03 00:00:00", "2025-03-10 00:00:00"),
        ("week", "2025-03-10 00:00:00", "2025-03-10 00:00:00", "2025-03-17 00:00:00"),
        ("week", "2025-01-01 08:00:00", "2024-12-30 00:00:00", "2025-01-06 00:00:00"),  # across a year
        # a calendar month from the 1st
        ("month", "2025-03-01 00:00:00", "2025-03-01 00:00:00", "2025-04-01 00:00:00"),
        ("month", "2025-03-31 23:59:59.999999", "2025-03-01 00:00:00", "2025-04-01 00:00:00"),
        ("month", "2024-02-29 10:00:00", "2024-02-01 00:00:00", "2024-03-01 00:00:00"),
        ("month", "2025-12-15 00:00:00", "2025-12-01 00:00:00", "2026-01-01 00:00:00"),
    ],
)
def test_period_boundaries_are_utc(period, now, start, end) -> None:
    # when
    got = (period_start(period, utc(now)), period_end(period, utc(now)))
    # then
    assert got == (utc(start), utc(end))


def test_other_time_zones_are_converted_to_utc_first() -> None:
    # given: Monday 01:30 in UTC+02:00 is Sunday 23:30 UTC
    now = datetime(2025, 3, 10, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    # when / then
    assert period_start("day", now) == utc("2025-03-09 00:00:00")
    assert period_start("week", now) == utc("2025-03-03 00:00:00")
    assert period_start("month", datetime(2025, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=3)))) == utc(
        "2025-03-01 00:00:00"
    )


@pytest.mark.parametrize(("period", "now"), [("year", utc("2025-01-01 00:00:00")), ("day", datetime(2025, 1, 1))])
def test_unknown_periods_and_naive_times_are_refused(period, now) -> None:
    with pytest.raises(ValueError):
        period_start(period, now)


@pytest.mark.django_db
def test_spent_counts_the_current_period_only(make_user, usage_row) -> None:
    # given: bob's weekly budget, spending on both sides of Monday 2025-03-10 00:00 UTC
    bob, _ = make_user("bob")
    bob.budget, bob.budget_period = 5_000_000, "week"
    bob.save()
    ann, _ = make_user("ann")
    usage_row(bob, at="2025-03-09T23:59:59.999999+00:00", cost=1_000_000)  # last week
    usage_row(bob, at="2025-03-10T00:00:00+00:00", cost=1_200_000)
    usage_row(bob, at="2025-03-16T23:59:59+00:00", cost=34)
    usage_row(bob, at="2025-03-17T00:00:00+00:00", cost=9_000_000)  # next week
    usage_row(ann, at="2025-03-11T00:00:00+00:00", cost=7)
    # when
    spent = spent_in_period(bob, utc("2025-03-12 09:00:00"))
    status = budget_status(bob, utc("2025-03-12 09:00:00"))
    # then
    assert spent == 1_200_034
    assert (status.budget, status.spent, status.remaining) == (5_000_000, 1_200_034, 3_799_966)
    assert status.resets_at == utc("2025-03-17 00:00:00")


@pytest.mark.django_db
def test_team_spending_is_its_members_spending(make_user, usage_row) -> None:
    # given
    red = Team.objects.create(name="red", budget=1_000_000, budget_period="day")
    rita, _ = make_user("rita", team=red)
    ron, _ = make_user("ron", team=red)
    outsider, _ = make_user("out")
    usage_row(rita, at="2025-03-05T01:00:00+00:00", cost=600_000)
    usage_row(ron, at="2025-03-05T02:00:00+00:00", cost=500_000)
    usage_row(outsider, at="2025-03-05T02:00:00+00:00", cost=1)
    usage_row(ron, at="2025-03-04T23:00:00+00:00", cost=99)  # yesterday
    # when
    status = budget_status(red, utc("2025-03-05 12:00:00"))
    # then: overspent by the last request; remaining never below zero
    assert (status.spent, status.remaining) == (1_100_000, 0)


@pytest.mark.django_db
def test_me_shows_budgets_of_the_user_and_the_team(make_user, api, usage_row) -> None:
    # given: spending this month (me is read "now", so the rows are dated now)
    from django.utils import timezone as dj_timezone

    now = dj_timezone.now()
    red = Team.objects.create(name="red", budget=50_000_000, budget_period="month")
    bob, access = make_user("bob", team=red)
    bob.budget, bob.budget_period = 2_000_000, "day"
    bob.save()
    usage_row(bob, at=now.isoformat(), cost=250_000)
    # when
    body = api(access).get("/api/me/").json()
    # then
    assert {k: v for k, v in body.items() if k.startswith(("budget", "team_budget"))} == {
        "budget_usd": "2.000000",
        "budget_period": "day",
        "budget_spent_usd": "0.250000",
        "budget_remaining_usd": "1.750000",
        "budget_resets_at": period_end("day", now).isoformat().replace("+00:00", "Z"),
        "team_budget_usd": "50.000000",
        "team_budget_period": "month",
        "team_budget_spent_usd": "0.250000",
        "team_budget_remaining_usd": "49.750000",
        "team_budget_resets_at": period_end("month", now).isoformat().replace("+00:00", "Z"),
    }


@pytest.mark.django_db
def test_me_without_budgets(make_user, api) -> None:
    # given
    _, access = make_user("bob")
    # when
    body = api(access).get("/api/me/").json()
    # then
    assert (body["budget_usd"], body["budget_period"], body["budget_spent_usd"], body["budget_remaining_usd"]) == (
        None,
        "month",
        "0.000000",
        None,
    )
    assert body["team_budget_usd"] is None and body["team_budget_remaining_usd"] is None


@pytest.mark.django_db
def test_operators_set_a_budget_through_the_api(operator, make_user, api) -> None:
    # given
    bob, access = make_user("bob")
    # when
    set_it = api(operator[1]).patch(
        f"/api/users/{bob.pk}/", {"budget_usd": "12.5", "budget_period": "week"}, format="json"
    )
    by_self = api(access).patch(f"/api/users/{bob.pk}/", {"budget_usd": None}, format="json")
    bad = api(operator[1]).patch(f"/api/users/{bob.pk}/", {"budget_period": "year"}, format="json")
    # then
    assert set_it.status_code == 200
    assert (set_it.json()["budget_usd"], set_it.json()["budget_period"]) == ("12.500000", "week")
    assert by_self.status_code == 403
    assert bad.status_code == 400
    bob.refresh_from_db()
    assert (bob.budget, bob.budget_period) == (12_500_000, "week")


@pytest.mark.django_db
def test_admin_edits_budgets_in_usd_and_shows_what_is_left(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    red = Team.objects.create(name="red")
    # when
    saved = client.post(
        f"/admin/billing/team/{red.pk}/change/",
        {"name": "red", "multiplier": "1", "budget": "30.25", "budget_period": "week"},
    )
    page = client.get(f"/admin/billing/team/{red.pk}/change/").content.decode()
    # then
    assert saved.status_code == 302, saved.content
    red.refresh_from_db()
    assert (red.budget, red.budget_period) == (30_250_000, "week")
    assert 'value="30.250000"' in page
    assert "$30.250000 of $30.250000 left this week" in page


@pytest.mark.django_db
def test_team_admins_set_their_members_budgets(client, make_user) -> None:
    # given
    red = Team.objects.create(name="red")
    tess, _ = make_user("tess", role="team_admin", team=red)
    rita, _ = make_user("rita", team=red)
    rita.budget, rita.budget_period = 4_000_000, "day"
    rita.save()
    client.force_login(tess)
    # when
    page = client.get(f"/admin/billing/user/{rita.pk}/change/").content.decode()
    saved = client.post(
        f"/admin/billing/user/{rita.pk}/change/",
        {
            "username": "rita",
            "first_name": "Rita",
            "email": "",
            "is_active": "on",
            "budget": "",
            "budget_period": "week",
        },
    )
    # then: the budget is on the form, in USD, and emptied means no budget
    assert 'name="budget"' in page and 'value="4.000000"' in page
    assert saved.status_code == 302, saved.content
    rita.refresh_from_db()
    assert (rita.first_name, rita.budget, rita.budget_period) == ("Rita", None, "week")


@pytest.mark.django_db
def test_operators_set_a_user_budget_in_the_admin(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    bob, _ = make_user("bob")
    form = {"username": "bob", "email": "", "role": "member", "group": bob.group_id, "is_active": "on"}
    # when
    saved = client.post(f"/admin/billing/user/{bob.pk}/change/", {**form, "budget": "7.5", "budget_period": "day"})
    page = client.get(f"/admin/billing/user/{bob.pk}/change/").content.decode()
    # then
    assert saved.status_code == 302, saved.content
    bob.refresh_from_db()
    assert (bob.budget, bob.budget_period) == (7_500_000, "day")
    assert "$7.500000 of $7.500000 left this day" in page
