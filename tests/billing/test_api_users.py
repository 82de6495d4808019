"""/api/users/ and /api/me/: who may create, see, change, top up and rotate whom."""

from __future__ import annotations

import pytest

from billing.models import Group, LedgerEntry, Team, User
from relay.relay_keys import hash_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return Team.objects.create(name="red")


@pytest.fixture
def team_admin(make_user, team):
    return make_user("tess", role="team_admin", team=team)


def test_operator_creates_a_user_and_sees_the_access_token_once(operator, api):
    # given
    Group.objects.create(name="vip")
    Team.objects.create(name="blue")
    # when
    response = api(operator[1]).post(
        "/api/users/",
        {"username": "bob", "password": "correct horse battery", "group": "vip", "team": "blue", "email": "b@x.io"},
        format="json",
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["username"] == "bob"
    assert body["group"] == "vip"
    assert body["team"] == "blue"
    assert body["role"] == "member"
    assert body["balance_usd"] == "0.000000"
    bob = User.objects.get(pk=body["id"])
    assert bob.access_token_hash == hash_key(body["access_token"])
    assert bob.check_password("correct horse battery")
    assert b"pbkdf2" not in response.content and "password" not in body
    # and the token works, and is not shown again
    me = api(body["access_token"]).get("/api/me/")
    assert me.status_code == 200 and me.json()["username"] == "bob"
    assert "access_token" not in api(operator[1]).get(f"/api/users/{bob.pk}/").json()


def test_a_user_created_without_group_is_in_default(operator, api):
    # when
    response = api(operator[1]).post("/api/users/", {"username": "nogroup"}, format="json")
    # then
    assert response.status_code == 201
    assert response.json()["group"] == "default"
    assert response.json()["team"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "op"}, "username"),  # taken
        ({"username": "x", "password": "short"}, "password"),
        ({"username": "x", "group": "nope"}, "group"),
        ({"username": "x", "team": "nope"}, "team"),
        ({"username": "x", "role": "king"}, "role"),
        ({"username": "bad name!"}, "username"),
        ({"username": "x", "balance_usd": "100"}, "balance_usd"),
        ({"password": "long enough pw"}, "username"),
    ],
)
def test_invalid_user_fields_are_a_400(operator, api, body, field):
    # when
    response = api(operator[1]).post("/api/users/", body, format="json")
    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["fields"]
    assert field in error["message"]


def test_team_admin_creates_members_of_their_own_team(team_admin, team, api):
    # when
    response = api(team_admin[1]).post("/api/users/", {"username": "mia"}, format="json")
    # then
    assert response.status_code == 201
    assert response.json()["team"] == "red"
    assert response.json()["role"] == "member"
    assert User.objects.get(username="mia").team == team


@pytest.mark.parametrize(
    "extra",
    [{"role": "operator"}, {"role": "team_admin"}, {"team": "blue"}, {"team": None}, {"group": "vip"}],
)
def test_team_admin_cannot_create_outside_their_team_or_role(team_admin, api, extra):
    # given
    Team.objects.create(name="blue")
    Group.objects.create(name="vip")
    # when
    response = api(team_admin[1]).post("/api/users/", {"username": "eve", **extra}, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not User.objects.filter(username="eve").exists()


def test_members_cannot_create_users(make_user, api):
    # given
    _, token = make_user("m")
    # when
    response = api(token).post("/api/users/", {"username": "other"}, format="json")
    # then
    assert response.status_code == 403
    assert not User.objects.filter(username="other").exists()


def test_list_is_scoped_by_role(operator, team_admin, team, make_user, api):
    # given
    _, mate_token = make_user("mate", team=team)
    make_user("out")
    # when
    as_operator = api(operator[1]).get("/api/users/").json()
    as_admin = api(team_admin[1]).get("/api/users/").json()
    as_member = api(mate_token).get("/api/users/").json()
    # then
    assert set(as_operator) == {"count", "next", "previous", "results"}
    assert {u["username"] for u in as_operator["results"]} == {"op", "tess", "mate", "out"}
    assert {u["username"] for u in as_admin["results"]} == {"tess", "mate"}
    assert as_member["count"] == 1 and as_member["results"][0]["username"] == "mate"


def test_detail_outside_visibility_is_404(team_admin, make_user, api):
    # given
    outsider, outsider_token = make_user("out")
    # when
    by_admin = api(team_admin[1]).get(f"/api/users/{outsider.pk}/")
    by_member = api(outsider_token).get(f"/api/users/{team_admin[0].pk}/")
    # then
    assert by_admin.status_code == 404
    assert by_member.status_code == 404
    assert by_admin.json()["error"]["code"] == "not_found"


def test_detail_never_shows_hashes(operator, make_user, api):
    # given
    user, _ = make_user("bob", password="correct horse battery")
    # when
    response = api(operator[1]).get(f"/api/users/{user.pk}/")
    # then
    assert response.status_code == 200
    assert set(response.json()) == {
        "id", "username", "email", "role", "group", "team", "is_active", "date_joined", "balance_usd",
        "budget_usd", "budget_period",
    }  # fmt: skip
    user.refresh_from_db()
    assert user.access_token_hash.encode() not in response.content
    assert user.password.encode() not in response.content


def test_operator_patches_group_team_role_and_active(operator, make_user, api):
    # given
    user, token = make_user("bob")
    Group.objects.create(name="vip")
    Team.objects.create(name="blue")
    # when
    response = api(operator[1]).patch(
        f"/api/users/{user.pk}/",
        {"group": "vip", "team": "blue", "role": "team_admin", "is_active": False},
        format="json",
    )
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["group"], body["team"], body["role"], body["is_active"]) == ("vip", "blue", "team_admin", False)
    assert body["username"] == "bob"  # the whole object
    user.refresh_from_db()
    assert user.is_staff and not user.is_superuser
    assert api(token).get("/api/me/").status_code == 401  # deactivated


def test_patch_does_not_overwrite_a_balance_moved_meanwhile(operator, make_user, api):
    # given: the relay settles a charge with a plain UPDATE while the API works
    user, _ = make_user("bob")
    User.objects.filter(pk=user.pk).update(balance=7_000_000)
    # when
    response = api(operator[1]).patch(f"/api/users/{user.pk}/", {"is_active": True}, format="json")
    # then
    assert response.json()["balance_usd"] == "7.000000"
    user.refresh_from_db()
    assert user.balance == 7_000_000


@pytest.mark.parametrize("body", [{"balance_usd": "100.000000"}, {"balance": 100}, {"username": "renamed"}])
def test_nobody_edits_balance_or_username_by_patch(operator, make_user, api, body):
    # given
    user, _ = make_user("bob")
    # when
    response = api(operator[1]).patch(f"/api/users/{user.pk}/", body, format="json")
    # then
    assert response.status_code == 400
    user.refresh_from_db()
    assert user.balance == 0 and user.username == "bob"


def test_only_operators_patch_users(team_admin, team, make_user, api):
    # given
    mate, mate_token = make_user("mate", team=team)
    # when
    by_admin = api(team_admin[1]).patch(f"/api/users/{mate.pk}/", {"is_active": False}, format="json")
    by_self = api(mate_token).patch(f"/api/users/{mate.pk}/", {"role": "operator"}, format="json")
    # then
    assert by_admin.status_code == 403
    assert by_self.status_code == 403
    mate.refresh_from_db()
    assert mate.is_active and mate.role == "member"


def test_an_operator_cannot_demote_themselves(operator, api):
    # when
    response = api(operator[1]).patch(f"/api/users/{operator[0].pk}/", {"role": "member"}, format="json")
    # then
    assert response.status_code == 400
    operator[0].refresh_from_db()
    assert operator[0].is_operator


def test_topup_adds_to_balance_through_the_ledger(operator, make_user, api):
    # given
    user, _ = make_user("bob")
    # when
    response = api(operator[1]).post(
        f"/api/users/{user.pk}/topup/", {"amount_usd": "12.50", "note": "welcome"}, format="json"
    )
    again = api(operator[1]).post(f"/api/users/{user.pk}/topup/", {"amount_usd": "0.000001"}, format="json")
    # then
    assert response.status_code == 200
    assert response.json()["balance_usd"] == "12.500000"
    assert response.json()["username"] == "bob"
    assert again.json()["balance_usd"] == "12.500001"
    entries = list(LedgerEntry.objects.filter(user=user).order_by("id"))
    assert [(e.kind, e.amount, e.note, e.actor_id) for e in entries] == [
        ("topup", 12_500_000, "welcome", operator[0].pk),
        ("topup", 1, "", operator[0].pk),
    ]
    user.refresh_from_db()
    assert user.balance == 12_500_001


@pytest.mark.parametrize(
    "amount",
    [
        "0",
        "-5",
        "1.0000001",
        "1.0000000000000000000000000000001",
        "abc",
        "",
        "NaN",
        "Infinity",
        True,
        None,
        "1e12",
        [1],
    ],
)
def test_bad_topup_amounts_are_a_400(operator, make_user, api, amount):
    # given
    user, _ = make_user("bob")
    # when
    response = api(operator[1]).post(f"/api/users/{user.pk}/topup/", {"amount_usd": amount}, format="json")
    # then
    assert response.status_code == 400, amount
    assert "amount_usd" in response.json()["error"]["message"]
    assert not LedgerEntry.objects.exists()


def test_only_operators_top_up(team_admin, team, make_user, api):
    # given
    mate, mate_token = make_user("mate", team=team)
    # when
    by_admin = api(team_admin[1]).post(f"/api/users/{mate.pk}/topup/", {"amount_usd": "5"}, format="json")
    by_self = api(mate_token).post(f"/api/users/{mate.pk}/topup/", {"amount_usd": "5"}, format="json")
    # then
    assert by_admin.status_code == 403
    assert by_self.status_code == 403
    assert not LedgerEntry.objects.exists()


def test_topup_of_unknown_user_is_404(operator, api):
    # when
    response = api(operator[1]).post("/api/users/99999/topup/", {"amount_usd": "5"}, format="json")
    # then
    assert response.status_code == 404


def test_a_user_rotates_their_own_access_token(make_user, api):
    # given
    user, old = make_user("bob")
    # when
    response = api(old).post(f"/api/users/{user.pk}/access_token/")
    # then
    assert response.status_code == 200
    new = response.json()["access_token"]
    assert new != old
    assert api(old).get("/api/me/").status_code == 401
    assert api(new).get("/api/me/").status_code == 200


def test_access_token_rotation_permissions(operator, team_admin, team, make_user, api):
    # given
    mate, _ = make_user("mate", team=team)
    other_admin, _ = make_user("ann", role="team_admin", team=team)
    outsider, outsider_token = make_user("out")
    # when / then: members only themselves; team admins their members; operators anyone
    assert api(outsider_token).post(f"/api/users/{mate.pk}/access_token/").status_code == 404
    assert api(team_admin[1]).post(f"/api/users/{outsider.pk}/access_token/").status_code == 404
    assert api(team_admin[1]).post(f"/api/users/{other_admin.pk}/access_token/").status_code == 403
    assert api(team_admin[1]).post(f"/api/users/{mate.pk}/access_token/").status_code == 200
    assert api(operator[1]).post(f"/api/users/{outsider.pk}/access_token/").status_code == 200


def test_me_shows_the_caller_with_balance(make_user, api):
    # given
    user, token = make_user("bob")
    User.objects.filter(pk=user.pk).update(balance=1_234_567)
    # when
    response = api(token).get("/api/me/")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.pk and body["username"] == "bob" and body["role"] == "member"
    assert body["balance_usd"] == "1.234567"
