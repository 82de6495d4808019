"""/api/usage/summary/ and the admin's usage totals: per user, team, token, model or channel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing import services
from billing.models import Team
from channels_app.models import Channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def usage(make_user, usage_row):
    """Team red: rita (2 rows) and ron (1 row); bert outside any team (1 row); one row in April."""
    red = Team.objects.create(name="red")
    rita, rita_access = make_user("rita", team=red)
    ron, _ = make_user("ron", team=red)
    bert, _ = make_user("bert")
    _, tess = make_user("tess", role="team_admin", team=red)
    laptop, _ = services.create_token(user=rita, name="laptop")
    chan = Channel.objects.create(name="main", type="openai")
    row = {"prompt_tokens": 100, "completion_tokens": 10, "cached_tokens": 5}
    usage_row(rita, token=laptop, channel=chan, model="gpt-4o", cost=1_000, **row)
    usage_row(rita, token=laptop, channel=chan, model="gpt-4o-mini", cost=20, **row)
    usage_row(ron, channel=chan, model="gpt-4o", cost=3_000, **row)
    usage_row(bert, model="gpt-4o", cost=400_000, **row)
    usage_row(bert, at="2025-04-02T00:00:00+00:00", model="gpt-4o", cost=7, **row)
    return {"red": red, "rita": rita, "ron": ron, "bert": bert, "laptop": laptop, "chan": chan, "tess": tess,
            "rita_access": rita_access}  # fmt: skip


def totals(requests: int, cost: str) -> dict:
    return {
        "requests": requests,
        "prompt_tokens": 100 * requests,
        "completion_tokens": 10 * requests,
        "cached_tokens": 5 * requests,
        "cost_usd": cost,
    }


MARCH = "since=2025-03-01T00:00:00Z&until=2025-04-01T00:00:00Z"


def test_operators_group_by_user(operator, api, usage) -> None:
    # when
    body = api(operator[1]).get(f"/api/usage/summary/?group_by=user&{MARCH}").json()
    # then
    assert (body["group_by"], body["since"], body["until"]) == ("user", "2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")
    assert body["count"] == 3
    assert body["results"] == [
        {"key": usage["bert"].pk, "name": "bert", **totals(1, "0.400000")},
        {"key": usage["ron"].pk, "name": "ron", **totals(1, "0.003000")},
        {"key": usage["rita"].pk, "name": "rita", **totals(2, "0.001020")},
    ]
    assert body["total"] == totals(4, "0.404020")


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("team", [(None, None, 1, "0.400000"), ("red", "red", 3, "0.004020")]),
        ("token", [(None, None, 2, "0.403000"), ("laptop", "laptop", 2, "0.001020")]),
        ("model", [("gpt-4o", "gpt-4o", 3, "0.404000"), ("gpt-4o-mini", "gpt-4o-mini", 1, "0.000020")]),
        ("channel", [(None, None, 1, "0.400000"), ("chan", "main", 3, "0.004020")]),
    ],
)
def test_every_grouping(operator, api, usage, group_by, expected) -> None:
    # when
    body = api(operator[1]).get(f"/api/usage/summary/?group_by={group_by}&{MARCH}").json()
    # then
    keys = {"red": usage["red"].pk, "laptop": usage["laptop"].pk, "chan": usage["chan"].pk}
    got = [(r["key"], r["name"], r["requests"], r["cost_usd"]) for r in body["results"]]
    assert got == [(keys.get(k, k), name, n, cost) for k, name, n, cost in expected]


def test_team_admins_and_members_see_only_their_share(api, usage) -> None:
    # when
    team_view = api(usage["tess"]).get(f"/api/usage/summary/?group_by=user&{MARCH}").json()
    own_view = api(usage["rita_access"]).get(f"/api/usage/summary/?group_by=model&{MARCH}").json()
    # then
    assert [r["name"] for r in team_view["results"]] == ["ron", "rita"]
    assert team_view["total"]["cost_usd"] == "0.004020"
    assert [(r["key"], r["cost_usd"]) for r in own_view["results"]] == [
        ("gpt-4o", "0.001000"),
        ("gpt-4o-mini", "0.000020"),
    ]


def test_the_window_is_half_open(operator, api, usage) -> None:
    # when
    april = api(operator[1]).get("/api/usage/summary/?group_by=user&since=2025-04-02T00:00:00Z").json()
    before = api(operator[1]).get("/api/usage/summary/?group_by=user&until=2025-04-02T00:00:00Z").json()
    # then
    assert april["total"] == totals(1, "0.000007")
    assert before["total"]["requests"] == 4


@pytest.mark.parametrize("query", ["", "group_by=day", "group_by=user&since=yesterday"])
def test_bad_parameters_are_a_400(operator, api, query) -> None:
    # when
    response = api(operator[1]).get(f"/api/usage/summary/?{query}")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_the_admin_page_shows_the_same_totals(client, operator, usage) -> None:
    # given
    client.force_login(operator[0])
    # when
    page = client.get(
        "/admin/billing/usagelog/summary/?group_by=team&since=2025-03-01+00:00&until=2025-04-01+00:00"
    ).content.decode()
    listing = client.get("/admin/billing/usagelog/").content.decode()
    # then
    assert "<td>3</td><td>300</td><td>30</td>" in page and "0.004020" in page
    assert "<th>4</th>" in page and "0.404020" in page
    assert "/admin/billing/usagelog/summary/" in listing


def test_team_admins_get_their_team_and_no_channels_in_the_admin(client, usage) -> None:
    # given
    from billing.models import User

    client.force_login(User.objects.get(username="tess"))
    # when
    page = client.get("/admin/billing/usagelog/summary/?group_by=user&since=2025-03-01+00:00").content.decode()
    by_channel = client.get("/admin/billing/usagelog/summary/?group_by=channel").content.decode()
    # then
    assert "rita" in page and "ron" in page and "bert" not in page
    assert "0.004020" in page and "0.404020" not in page  # red's usage, none of bert's
    assert "Select a valid choice" in by_channel


@pytest.fixture
def an_afternoon(make_user, usage_row):
    """bert's requests at 10:15, 10:45, 11:30 and 13:05 on 2025-03-01 (UTC), costing 1, 10, 100, 1000."""
    bert, _ = make_user("bert")
    for at, cost in (("10:15", 1), ("10:45", 10), ("11:30", 100), ("13:05", 1_000)):
        usage_row(bert, at=f"2025-03-01T{at}:00+00:00", cost=cost)
    return bert


def test_bounds_inside_an_hour_read_that_part_from_the_raw_rows(operator, api, an_afternoon) -> None:
    # when
    body = api(operator[1]).get(
        "/api/usage/summary/?group_by=user&since=2025-03-01T10:30:00Z&until=2025-03-01T13:10:00Z"
    )
    # then: 10:45, 11:30 and 13:05; the window is the one asked for
    assert body.json()["total"]["cost_usd"] == "0.001110"
    assert (body.json()["since"], body.json()["until"]) == ("2025-03-01T10:30:00Z", "2025-03-01T13:10:00Z")


def test_bounds_older_than_the_raw_rows_are_rounded_down_to_their_hour(operator, api, an_afternoon) -> None:
    # given: retention pruned the raw rows of that afternoon
    from billing import services

    assert services.prune_usage_logs(days=1, now=datetime(2025, 3, 3, tzinfo=UTC)) == 4
    # when
    body = api(operator[1]).get(
        "/api/usage/summary/?group_by=user&since=2025-03-01T10:30:00Z&until=2025-03-01T13:10:00Z"
    )
    # then: [10:00, 13:00) from the hour rollups, and the answer says so
    assert (body.json()["since"], body.json()["until"]) == ("2025-03-01T10:00:00Z", "2025-03-01T13:00:00Z")
    assert body.json()["total"]["cost_usd"] == "0.000111"
    whole = api(operator[1]).get("/api/usage/summary/?group_by=user&since=2025-03-01T00:00:00Z").json()
    assert whole["total"]["cost_usd"] == "0.001111" and whole["since"] == "2025-03-01T00:00:00Z"


def test_the_dashboard_series_per_hour_and_model(an_afternoon, usage_row) -> None:
    # given: another model at 10:50
    from billing import history

    usage_row(an_afternoon, at="2025-03-01T10:50:00+00:00", model="gpt-4o-mini", cost=5, status=502)
    # when
    points = history.series(
        since=datetime(2025, 3, 1, 10, tzinfo=UTC), until=datetime(2025, 3, 1, 14, tzinfo=UTC), by="model"
    )
    # then
    got = [(p["start"].hour, p["key"], p["requests"], p["errors"], p["cost"]) for p in points]
    assert got == [
        (10, "gpt-4o", 2, 0, 11),
        (10, "gpt-4o-mini", 1, 1, 5),
        (11, "gpt-4o", 1, 0, 100),
        (13, "gpt-4o", 1, 0, 1_000),
    ]
    assert points[0]["latency_histogram"][0] == 2 and points[0]["latency_ms"] == 80
    assert history.latency_quantile(points[0]["latency_histogram"], 0.99) == 100
    daily = history.series(since=datetime(2025, 3, 1, tzinfo=UTC), until=datetime(2025, 3, 2, tzinfo=UTC), step="day")
    assert [(p["start"].day, p["requests"], p["cost"]) for p in daily] == [(1, 5, 1_116)]
