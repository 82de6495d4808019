"""/api/usage/: one row per upstream request, scoped by role, filtered by query parameters."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import Team, UsageLog
from channels_app import services as channel_services
from channels_app.models import Channel
from tests.billing.events import settled_row

pytestmark = pytest.mark.django_db

ROW_FIELDS = {
    "id", "created_at", "user", "token", "model", "channel", "key_id", "prompt_tokens", "completion_tokens",
    "cached_tokens", "cache_write_tokens", "cost_usd", "attempts", "status", "latency_ms", "stream",
}  # fmt: skip


def _usage(user, *, at: str = "2025-03-01T12:00:00+00:00", **fields) -> UsageLog:
    return settled_row(user, at=at, **fields)


def test_rows_carry_the_contract_fields(make_user, api):
    # given
    bob, access = make_user("bob")
    token, _ = services.create_token(user=bob, name="t")
    channel = Channel.objects.create(name="c", type="openai")
    (key,) = channel_services.add_keys(channel, ["sk-upstream-1234567890"])
    row = _usage(
        bob, token=token, channel=channel, key=key, prompt_tokens=10, completion_tokens=5, cached_tokens=2,
        cost=1234, attempts=2, latency_ms=321, stream=True,
    )  # fmt: skip
    # when
    response = api(access).get("/api/usage/")
    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    (out,) = body["results"]
    assert set(out) == ROW_FIELDS
    assert out == {
        "id": row.pk,
        "created_at": "2025-03-01T12:00:00Z",
        "user": bob.pk,
        "token": token.pk,
        "model": "gpt-4o",
        "channel": channel.pk,
        "key_id": key.pk,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 2,
        "cache_write_tokens": 0,
        "cost_usd": "0.001234",
        "attempts": 2,
        "status": 200,
        "latency_ms": 321,
        "stream": True,
    }
    assert b"sk-upstream-1234567890" not in response.content


def test_visibility_by_role(operator, make_user, api):
    # given
    team = Team.objects.create(name="red")
    admin, admin_access = make_user("tess", role="team_admin", team=team)
    mate, mate_access = make_user("mate", team=team)
    outsider, _ = make_user("out")
    for user in (admin, mate, outsider):
        _usage(user)
    # when
    seen = {
        who: {row["user"] for row in api(access).get("/api/usage/").json()["results"]}
        for who, access in (("op", operator[1]), ("admin", admin_access), ("mate", mate_access))
    }
    # then
    assert seen["op"] == {admin.pk, mate.pk, outsider.pk}
    assert seen["admin"] == {admin.pk, mate.pk}
    assert seen["mate"] == {mate.pk}


def test_filters(operator, make_user, api):
    # given
    bob, _ = make_user("bob")
    eve, _ = make_user("eve")
    token, _ = services.create_token(user=bob, name="t")
    early = _usage(bob, at="2025-01-01T00:00:00+00:00", model="gpt-4o")
    middle = _usage(bob, at="2025-02-01T00:00:00+00:00", model="claude-3", token=token)
    late = _usage(eve, at="2025-03-01T00:00:00+00:00", model="gpt-4o")
    client = api(operator[1])

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/usage/?{query}")
        assert response.status_code == 200, response.content
        return sorted(row["id"] for row in response.json()["results"])

    # when / then
    assert ids(f"user={bob.pk}") == [early.pk, middle.pk]
    assert ids(f"token={token.pk}") == [middle.pk]
    assert ids("model=gpt-4o") == [early.pk, late.pk]
    assert ids("since=2025-02-01T00:00:00Z") == [middle.pk, late.pk]
    assert ids("until=2025-02-01T00:00:00Z") == [early.pk]  # until is exclusive
    assert ids("since=2025-01-15&until=2025-02-15") == [middle.pk]
    assert ids("since=2025-02-01T01:00:00%2B01:00") == [middle.pk, late.pk]
    assert ids("since=2025-02-01T01:00:00+01:00") == [middle.pk, late.pk]  # unencoded "+"
    assert ids(f"user={bob.pk}&model=gpt-4o") == [early.pk]


@pytest.mark.parametrize(
    ("query", "param"),
    [("since=yesterday", "since"), ("until=2025-13-01", "until"), ("user=bob", "user"), ("token=1.5", "token")],
)
def test_bad_filter_values_are_a_clear_400(operator, api, query, param):
    # when
    response = api(operator[1]).get(f"/api/usage/?{query}")
    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"{param}: ")


def test_a_member_filtering_for_another_user_sees_nothing(make_user, api):
    # given
    _, access = make_user("bob")
    eve, _ = make_user("eve")
    _usage(eve)
    # when
    response = api(access).get(f"/api/usage/?user={eve.pk}")
    # then
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_pagination(operator, api):
    # given
    for _ in range(3):
        _usage(operator[0])
    # when
    body = api(operator[1]).get("/api/usage/?limit=2").json()
    # then
    assert body["count"] == 3 and len(body["results"]) == 2
    assert body["next"] and body["previous"] is None
