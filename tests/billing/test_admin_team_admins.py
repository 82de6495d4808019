"""A team admin in the admin: what they may do for their members (budgets,
tokens) and what they must not reach, through the admin's own pages and by
typing URLs: other teams, channels, keys, prices, the ledger, roles, teams."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import LedgerEntry, ModelPrice, Team, Token, User
from channels_app.models import ChannelKey
from channels_app.services import create_channel

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def red(make_user):
    """Team red: admin tess, member rita; team blue: member bert."""
    red, blue = Team.objects.create(name="red", budget=50_000_000), Team.objects.create(name="blue")
    tess, _ = make_user("tess", role="team_admin", team=red)
    rita, _ = make_user("rita", team=red)
    bert, _ = make_user("bert", team=blue)
    return {"team": red, "blue": blue, "tess": tess, "rita": rita, "bert": bert}


@pytest.fixture
def tess(client, red):
    client.force_login(red["tess"])
    return client


def user_form(user: User, **changes) -> dict:
    form = {
        "username": user.username,
        "email": user.email,
        "first_name": "",
        "last_name": "",
        "is_active": "on",
        "budget_period": user.budget_period,
    }
    form.update(changes)
    return form


def test_a_team_admin_sets_a_members_budget_in_usd(tess, red) -> None:
    # given
    rita = red["rita"]
    # when
    page = tess.get(f"/admin/billing/user/{rita.pk}/change/").content.decode()
    saved = tess.post(f"/admin/billing/user/{rita.pk}/change/", user_form(rita, budget="12.5", budget_period="day"))
    # then
    assert 'name="budget"' in page
    assert saved.status_code == 302, saved.content
    rita.refresh_from_db()
    assert (rita.budget, rita.budget_period) == (12_500_000, "day")


def test_a_team_admin_cannot_set_their_own_budget_role_or_team(tess, red) -> None:
    # given
    me = red["tess"]
    # when
    page = tess.get(f"/admin/billing/user/{me.pk}/change/").content.decode()
    saved = tess.post(
        f"/admin/billing/user/{me.pk}/change/",
        user_form(me, budget="999", budget_period="day", role="operator", team=red["blue"].pk, is_superuser="on"),
    )
    # then
    assert 'name="budget"' not in page and 'name="role"' not in page and 'name="team"' not in page
    assert saved.status_code == 302, saved.content
    me.refresh_from_db()
    assert (me.budget, me.budget_period, me.role, me.team, me.is_superuser) == (
        None,
        "month",
        User.Role.TEAM_ADMIN,
        red["team"],
        False,
    )


def test_a_team_admin_cannot_touch_another_teams_member(tess, red) -> None:
    # given
    bert = red["bert"]
    # when
    page = tess.get(f"/admin/billing/user/{bert.pk}/change/")
    change = tess.post(f"/admin/billing/user/{bert.pk}/change/", user_form(bert, budget="1"))
    # then
    assert page.status_code == 302  # "does not exist"
    assert change.status_code == 302
    bert.refresh_from_db()
    assert bert.budget is None


def test_a_team_admin_sees_the_teams_budget_but_cannot_change_it(tess, red) -> None:
    # when
    page = tess.get(f"/admin/billing/team/{red['team'].pk}/change/")
    change = tess.post(
        f"/admin/billing/team/{red['team'].pk}/change/",
        {"name": "red", "multiplier": "0", "budget": "100000", "budget_period": "month"},
    )
    # then
    assert page.status_code == 200
    assert "$50.000000" in page.content.decode()
    assert 'name="budget"' not in page.content.decode()
    assert change.status_code == 403
    red["team"].refresh_from_db()
    assert (red["team"].budget, red["team"].multiplier) == (50_000_000, 1)


def test_a_team_admin_cannot_adjust_balances(tess, red) -> None:
    # when
    page = tess.get("/admin/billing/user/").content.decode()
    adjust = tess.post(
        "/admin/billing/user/",
        {
            "action": "adjust_balance",
            "_selected_action": [red["rita"].pk],
            "apply": "1",
            "amount_usd": "100",
            "note": "gift",
        },
    )
    # then
    assert "adjust_balance" not in page
    assert adjust.status_code in (200, 302)
    assert not LedgerEntry.objects.exists()
    red["rita"].refresh_from_db()
    assert red["rita"].balance == 0


def test_a_team_admin_revokes_a_members_token_but_not_another_teams(tess, red) -> None:
    # given
    mine, _ = services.create_token(user=red["rita"], name="rita-app")
    theirs, _ = services.create_token(user=red["bert"], name="bert-app")
    # when
    for token in (mine, theirs):
        tess.post(f"/admin/billing/token/{token.pk}/delete/", {"post": "yes"})
    # then: an unused token is deleted outright (a used one would be hidden)
    assert not Token.objects.filter(pk=mine.pk).exists()
    theirs.refresh_from_db()
    assert theirs.deleted_at is None and theirs.status == Token.Status.ACTIVE


def test_a_team_admin_cannot_move_a_token_to_another_team(tess, red) -> None:
    # given
    token, _ = services.create_token(user=red["rita"], name="rita-app")
    # when
    tess.post(
        f"/admin/billing/token/{token.pk}/change/",
        {"user": red["bert"].pk, "name": "moved", "status": "active", "models": "", "subnets": ""},
    )
    # then
    token.refresh_from_db()
    assert token.user == red["rita"]


@pytest.mark.parametrize(
    ("url", "form"),
    [
        ("/admin/billing/modelprice/add/", {"model": "gpt-x", "input": "0", "output": "0"}),
        ("/admin/billing/group/add/", {"name": "vip", "multiplier": "0"}),
        ("/admin/billing/team/add/", {"name": "green", "multiplier": "1", "budget_period": "month"}),
        ("/admin/channels_app/channel/add/", {"name": "mine", "type": "openai"}),
        ("/admin/billing/redemptioncode/add/", {"name": "free", "amount_usd": "100", "count": "1"}),
    ],
)
def test_a_team_admin_cannot_add_operator_rows(tess, url, form) -> None:
    # when
    response = tess.post(url, form)
    # then
    assert response.status_code == 403
    assert not ModelPrice.objects.filter(model="gpt-x").exists()
    assert not Team.objects.filter(name="green").exists()


def test_a_team_admin_cannot_reach_keys_by_url(tess) -> None:
    # given
    channel = create_channel(name="main", type="openai", keys=["sk-provider-key-000000001"])
    key = channel.keys.get()
    # when
    pages = [
        tess.get(f"/admin/channels_app/channelkey/{key.pk}/change/"),
        tess.post(f"/admin/channels_app/channelkey/{key.pk}/change/", {"state": "manual_disabled"}),
        tess.post("/admin/channels_app/channelkey/", {"action": "disable", "_selected_action": [key.pk]}),
    ]
    # then
    assert all(page.status_code == 403 for page in pages), [page.status_code for page in pages]
    key.refresh_from_db()
    assert key.state == ChannelKey.State.ACTIVE
