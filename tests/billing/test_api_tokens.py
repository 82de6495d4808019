"""/api/tokens/: relay keys shown once, stored as SHA-256, scoped by role, soft-deleted when used."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest
from django.utils import timezone

from billing.models import Team, Token, UsageLog

pytestmark = pytest.mark.django_db

TOKEN_FIELDS = {
    "id", "name", "user", "key_prefix", "status", "expires_at", "quota_usd", "used_usd", "models", "subnets",
    "rpm_limit", "tpm_limit", "rpd_limit", "concurrency_limit", "created_at", "last_used_at",
}  # fmt: skip


@pytest.fixture
def team():
    return Team.objects.create(name="red")


def _usage(token: Token) -> UsageLog:
    return UsageLog.objects.create(
        request_id=uuid.uuid4().hex,
        created_at=timezone.now(),
        user=token.user,
        token=token,
        endpoint="/v1/chat/completions",
        model="gpt-4o",
        status=200,
    )


def test_create_shows_the_key_once_and_stores_only_its_sha256(make_user, api):
    # given
    user, access = make_user("bob")
    # when
    response = api(access).post(
        "/api/tokens/",
        {
            "name": "ci",
            "quota_usd": "5.25",
            "expires_at": "2030-01-01T00:00:00Z",
            "models": ["gpt-4o", "gpt-4o-mini"],
            "subnets": ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"],
            "rpm_limit": 60,
            "tpm_limit": 100000,
            "rpd_limit": 1000,
            "concurrency_limit": 4,
        },
        format="json",
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    key = body["key"]
    assert re.fullmatch(r"sk-[A-Za-z0-9]{48}", key)
    assert set(body) == TOKEN_FIELDS | {"key"}
    assert body["user"] == user.pk
    assert body["quota_usd"] == "5.250000" and body["used_usd"] == "0.000000"
    assert body["subnets"] == ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7/32"]
    assert (body["rpm_limit"], body["tpm_limit"], body["rpd_limit"], body["concurrency_limit"]) == (60, 100000, 1000, 4)
    assert body["expires_at"] == "2030-01-01T00:00:00Z"
    token = Token.objects.get(pk=body["id"])
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert token.quota == 5_250_000
    row = Token.objects.filter(pk=token.pk).values().get()
    assert all(key not in str(value) for value in row.values())
    # never shown again
    for again in (api(access).get(f"/api/tokens/{token.pk}/"), api(access).get("/api/tokens/")):
        assert key.encode() not in again.content
        assert b'"key"' not in again.content


def test_a_token_with_no_limits_is_unlimited(make_user, api):
    # given
    _, access = make_user("bob")
    # when
    body = api(access).post("/api/tokens/", {"name": "plain"}, format="json").json()
    # then
    assert body["quota_usd"] is None and body["expires_at"] is None
    assert body["models"] == [] and body["subnets"] == []
    assert body["rpm_limit"] is None and body["concurrency_limit"] is None
    assert body["status"] == "active"


def test_create_disabled(make_user, api):
    # given
    _, access = make_user("bob")
    # when
    response = api(access).post("/api/tokens/", {"name": "later", "status": "disabled"}, format="json")
    # then
    assert response.status_code == 201
    assert Token.objects.get(pk=response.json()["id"]).status == "disabled"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "t", "subnets": ["10.0.0.300/8"]}, "subnets"),
        ({"name": "t", "subnets": ["not-a-cidr"]}, "subnets"),
        ({"name": "t", "subnets": "10.0.0.0/8"}, "subnets"),
        ({"name": "t", "quota_usd": "-1"}, "quota_usd"),
        ({"name": "t", "quota_usd": "0.0000001"}, "quota_usd"),
        ({"name": "t", "models": [""]}, "models"),
        ({"name": "t", "models": [5]}, "models"),
        ({"name": "t", "rpm_limit": 0}, "rpm_limit"),
        ({"name": "t", "rpm_limit": "many"}, "rpm_limit"),
        ({"name": "t", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "t", "status": "paused"}, "status"),
        ({"name": "t", "quota": 5}, "quota"),
        ({"name": "t", "key": "sk-mine"}, "key"),
        ({"name": "t", "user": 99999}, "user"),
        ({"name": ""}, "name"),
        ({}, "name"),
    ],
)
def test_invalid_token_fields_are_a_400(make_user, operator, api, body, field):
    # when
    response = api(operator[1]).post("/api/tokens/", body, format="json")
    # then
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Token.objects.exists()


def test_zero_quota_is_allowed(make_user, api):
    # given
    _, access = make_user("bob")
    # when
    response = api(access).post("/api/tokens/", {"name": "frozen", "quota_usd": "0"}, format="json")
    # then
    assert response.status_code == 201
    assert response.json()["quota_usd"] == "0.000000"


def test_a_member_creates_only_for_themselves(make_user, api):
    # given
    _, access = make_user("bob")
    other, _ = make_user("eve")
    # when
    response = api(access).post("/api/tokens/", {"name": "x", "user": other.pk}, format="json")
    # then
    assert response.status_code == 403
    assert not Token.objects.exists()


def test_a_team_admin_creates_for_their_members_only(make_user, team, api):
    # given
    _, admin_access = make_user("tess", role="team_admin", team=team)
    mate, _ = make_user("mate", team=team)
    outsider, _ = make_user("out")
    # when
    for_mate = api(admin_access).post("/api/tokens/", {"name": "m", "user": mate.pk}, format="json")
    for_outsider = api(admin_access).post("/api/tokens/", {"name": "o", "user": outsider.pk}, format="json")
    # then
    assert for_mate.status_code == 201 and for_mate.json()["user"] == mate.pk
    assert for_outsider.status_code == 403
    assert list(Token.objects.values_list("user_id", flat=True)) == [mate.pk]


def test_operators_create_for_anyone(operator, make_user, api):
    # given
    bob, _ = make_user("bob")
    # when
    response = api(operator[1]).post("/api/tokens/", {"name": "b", "user": bob.pk}, format="json")
    # then
    assert response.status_code == 201 and response.json()["user"] == bob.pk


def test_list_is_scoped_by_role(operator, make_user, team, api):
    # given
    from billing import services

    admin, admin_access = make_user("tess", role="team_admin", team=team)
    mate, mate_access = make_user("mate", team=team)
    outsider, _ = make_user("out")
    for owner in (admin, mate, outsider):
        services.create_token(user=owner, name=f"{owner.username}-key")
    # when
    names = {
        who: {t["name"] for t in api(access).get("/api/tokens/").json()["results"]}
        for who, access in (("op", operator[1]), ("admin", admin_access), ("mate", mate_access))
    }
    # then
    assert names["op"] == {"tess-key", "mate-key", "out-key"}
    assert names["admin"] == {"tess-key", "mate-key"}
    assert names["mate"] == {"mate-key"}


def test_list_filters_by_user(operator, make_user, api):
    # given
    from billing import services

    bob, _ = make_user("bob")
    eve, _ = make_user("eve")
    services.create_token(user=bob, name="b")
    services.create_token(user=eve, name="e")
    # when
    response = api(operator[1]).get(f"/api/tokens/?user={bob.pk}")
    bad = api(operator[1]).get("/api/tokens/?user=bob")
    # then
    assert response.json()["count"] == 1
    assert response.json()["results"][0]["name"] == "b"
    assert set(response.json()["results"][0]) == TOKEN_FIELDS
    assert bad.status_code == 400


def test_a_member_cannot_see_another_users_token(make_user, api):
    # given
    from billing import services

    _, access = make_user("bob")
    eve, _ = make_user("eve")
    token, _ = services.create_token(user=eve, name="e")
    # when
    detail = api(access).get(f"/api/tokens/{token.pk}/")
    patch = api(access).patch(f"/api/tokens/{token.pk}/", {"status": "disabled"}, format="json")
    delete = api(access).delete(f"/api/tokens/{token.pk}/")
    # then
    assert (detail.status_code, patch.status_code, delete.status_code) == (404, 404, 404)
    token.refresh_from_db()
    assert token.status == "active"


def test_patch_returns_the_whole_token(make_user, api):
    # given
    from billing import services

    bob, access = make_user("bob")
    token, _ = services.create_token(user=bob, name="old", rpm_limit=10)
    Token.objects.filter(pk=token.pk).update(used=3_000_000)  # settled by the relay meanwhile
    # when
    response = api(access).patch(
        f"/api/tokens/{token.pk}/",
        {"name": "new", "status": "disabled", "quota_usd": "9.99", "rpm_limit": None, "subnets": ["::1"]},
        format="json",
    )
    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == TOKEN_FIELDS
    assert (body["name"], body["status"], body["quota_usd"], body["rpm_limit"]) == ("new", "disabled", "9.990000", None)
    assert body["subnets"] == ["::1/128"]
    assert body["used_usd"] == "3.000000"
    token.refresh_from_db()
    assert token.used == 3_000_000 and token.quota == 9_990_000


@pytest.mark.parametrize("body", [{"user": 1}, {"used_usd": "0"}, {"key_prefix": "sk-x"}, {"subnets": ["999.1.1.1"]}])
def test_patch_rejects_read_only_and_bad_fields(make_user, api, body):
    # given
    from billing import services

    bob, access = make_user("bob")
    token, _ = services.create_token(user=bob, name="t")
    # when
    response = api(access).patch(f"/api/tokens/{token.pk}/", body, format="json")
    # then
    assert response.status_code == 400


def test_a_team_admin_sees_but_cannot_change_an_operators_token(make_user, team, api):
    # given
    from billing import services

    _, admin_access = make_user("tess", role="team_admin", team=team)
    boss, _ = make_user("boss", role="operator", team=team)
    token, _ = services.create_token(user=boss, name="boss-key")
    # when
    seen = api(admin_access).get(f"/api/tokens/{token.pk}/")
    changed = api(admin_access).patch(f"/api/tokens/{token.pk}/", {"quota_usd": "0"}, format="json")
    # then
    assert seen.status_code == 200
    assert changed.status_code == 403


def test_deleting_an_unused_token_removes_it(make_user, api):
    # given
    from billing import services

    bob, access = make_user("bob")
    token, _ = services.create_token(user=bob, name="t")
    # when
    response = api(access).delete(f"/api/tokens/{token.pk}/")
    # then
    assert response.status_code == 204
    assert not Token.objects.filter(pk=token.pk).exists()


def test_deleting_a_used_token_disables_and_hides_it(make_user, api):
    # given
    from billing import services

    bob, access = make_user("bob")
    token, _ = services.create_token(user=bob, name="t")
    usage = _usage(token)
    # when
    response = api(access).delete(f"/api/tokens/{token.pk}/")
    # then
    assert response.status_code == 204
    token.refresh_from_db()
    assert token.deleted_at is not None and token.status == "disabled"
    assert api(access).get(f"/api/tokens/{token.pk}/").status_code == 404
    assert api(access).get("/api/tokens/").json()["count"] == 0
    assert api(access).delete(f"/api/tokens/{token.pk}/").status_code == 404
    assert api(access).get("/api/usage/").json()["results"][0]["token"] == token.pk == usage.token_id


def test_unknown_token_is_404(operator, api):
    # when
    responses = [api(operator[1]).get(path) for path in ("/api/tokens/99999/", "/api/tokens/abc/")]
    # then
    assert [r.status_code for r in responses] == [404, 404]
    assert all(r.json()["error"]["code"] == "not_found" for r in responses)
