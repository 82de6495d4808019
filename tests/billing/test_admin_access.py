"""Who gets into the admin and what they see there: operators everything,
team admins their own team only, members nothing."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import LedgerEntry, Team, Token, UsageLog, User
from channels_app.services import create_channel
from relay.relay_keys import hash_key
from tests.billing.events import settled_row

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # Real hashing costs ~0.3 s a password; what is tested here is who gets in.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def teams(make_user):
    """Team red (admin tess, member rita) and team blue (member bert), each with a token."""
    red, blue = Team.objects.create(name="red"), Team.objects.create(name="blue")
    tess, _ = make_user("tess", role="team_admin", team=red, password="tess-password-1")
    rita, _ = make_user("rita", team=red)
    bert, _ = make_user("bert", team=blue)
    services.create_token(user=rita, name="rita-laptop")
    services.create_token(user=bert, name="bert-server")
    return {"red": red, "blue": blue, "tess": tess, "rita": rita, "bert": bert}


@pytest.fixture
def team_admin_client(client, teams):
    client.force_login(teams["tess"])
    return client


def usage_row(user: User, request_id: str, model: str) -> UsageLog:
    return settled_row(user, request_id=request_id, model=model, endpoint="chat", cost=1_234_567)


def test_a_member_cannot_log_in(client, make_user) -> None:
    # given
    make_user("mel", password="mel-password-123")
    # when
    login = client.post("/admin/login/?next=/admin/", {"username": "mel", "password": "mel-password-123"})
    index = client.get("/admin/")
    # then
    assert login.status_code == 200
    assert "staff account" in login.content.decode()
    assert index.status_code == 302
    assert index["Location"].startswith("/admin/login/")


def test_a_member_with_a_session_is_still_refused(client, make_user) -> None:
    # given
    mel, _ = make_user("mel")
    client.force_login(mel)
    # when
    response = client.get("/admin/billing/user/")
    # then
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_team_admin_logs_in_and_sees_only_team_pages(client, teams) -> None:
    # when
    login = client.post("/admin/login/?next=/admin/", {"username": "tess", "password": "tess-password-1"})
    index = client.get("/admin/").content.decode()
    # then
    assert login.status_code == 302
    for url in ("/admin/billing/user/", "/admin/billing/token/", "/admin/billing/usagelog/"):
        assert url in index
    for url in (
        "/admin/channels_app/",
        "/admin/billing/group/",
        "/admin/billing/modelprice/",
        "/admin/billing/ledgerentry/",
        "/admin/django_celery_beat/",
    ):
        assert url not in index


def test_a_team_admin_sees_only_their_teams_users(team_admin_client, teams, operator) -> None:
    # given
    operator[0].team = teams["red"]
    operator[0].save()
    # when
    page = team_admin_client.get("/admin/billing/user/").content.decode()
    other = team_admin_client.get(f"/admin/billing/user/{teams['bert'].pk}/change/")
    # then
    assert ">rita<" in page and ">tess<" in page
    assert ">bert<" not in page
    assert f">{operator[0].username}<" not in page  # operators stay out of reach
    assert ">blue<" not in page  # no team filter listing every team
    assert other.status_code == 302  # "does not exist"


def test_a_team_admin_sees_only_their_teams_tokens(team_admin_client, teams) -> None:
    # given
    bert_token = Token.objects.get(name="bert-server")
    # when
    page = team_admin_client.get("/admin/billing/token/").content.decode()
    other = team_admin_client.get(f"/admin/billing/token/{bert_token.pk}/change/")
    disable = team_admin_client.post(
        "/admin/billing/token/", {"action": "disable", "_selected_action": [bert_token.pk]}
    )
    # then
    assert "rita-laptop" in page
    assert "bert-server" not in page
    assert other.status_code == 302
    assert disable.status_code == 302
    bert_token.refresh_from_db()
    assert bert_token.status == Token.Status.ACTIVE


def test_a_team_admin_issues_tokens_only_to_their_team(team_admin_client, teams) -> None:
    # given
    form = {"name": "new", "quota_usd": "5", "models": "", "subnets": ""}
    # when
    refused = team_admin_client.post("/admin/billing/token/add/", {**form, "user": teams["bert"].pk})
    issued = team_admin_client.post("/admin/billing/token/add/", {**form, "user": teams["rita"].pk}, follow=True)
    # then
    assert refused.status_code == 200
    assert "Select a valid choice" in refused.content.decode()
    assert issued.status_code == 200
    token = Token.objects.get(name="new")
    assert token.user == teams["rita"]
    assert token.quota == 5_000_000
    assert token.key_prefix[:7] in issued.content.decode()


def test_a_team_admin_sees_only_their_teams_usage(team_admin_client, teams) -> None:
    # given
    usage_row(teams["rita"], "req-red", "red-model")
    usage_row(teams["bert"], "req-blue", "blue-model")
    # when
    page = team_admin_client.get("/admin/billing/usagelog/").content.decode()
    # then
    assert "red-model" in page and "$1.234567" in page
    assert "blue-model" not in page  # neither as a row nor in the model filter


@pytest.mark.parametrize(
    "url",
    [
        "/admin/channels_app/channel/",
        "/admin/channels_app/channelkey/",
        "/admin/billing/group/",
        "/admin/billing/modelprice/",
        "/admin/billing/ledgerentry/",
        "/admin/billing/user/{bert}/password/",
        "/admin/billing/user/{bert}/delete/",
    ],
)
def test_a_team_admin_is_refused_operator_pages(team_admin_client, teams, url) -> None:
    # when
    response = team_admin_client.get(url.format(bert=teams["bert"].pk))
    # then
    assert response.status_code in (403, 404)


def test_a_team_admin_gets_403_on_a_channel(team_admin_client) -> None:
    # given
    channel = create_channel(name="main", type="openai", keys=["sk-provider-key-000000001"])
    # when
    response = team_admin_client.get(f"/admin/channels_app/channel/{channel.pk}/change/")
    # then
    assert response.status_code == 403


def test_a_team_admin_sees_only_their_own_team(team_admin_client, teams) -> None:
    # when
    page = team_admin_client.get("/admin/billing/team/").content.decode()
    own = team_admin_client.get(f"/admin/billing/team/{teams['red'].pk}/change/")
    other = team_admin_client.get(f"/admin/billing/team/{teams['blue'].pk}/change/")
    # then
    assert ">red<" in page and ">blue<" not in page
    assert own.status_code == 200
    assert 'name="multiplier"' not in own.content.decode()  # read-only
    assert other.status_code == 302


def test_a_team_admin_adds_members_only_to_their_team(team_admin_client, teams) -> None:
    # when
    response = team_admin_client.post(
        "/admin/billing/user/add/",
        {
            "username": "newbie",
            "usable_password": "false",
            "email": "n@x.io",
            "role": "operator",  # not on the form: ignored
            "team": teams["blue"].pk,  # ditto
        },
        follow=True,
    )
    # then
    assert response.status_code == 200, response.content
    newbie = User.objects.get(username="newbie")
    assert (newbie.role, newbie.team, newbie.is_staff) == (User.Role.MEMBER, teams["red"], False)
    assert "Access token for newbie: <code>op-" in response.content.decode()


def test_a_team_admin_cannot_promote_a_member(team_admin_client, teams) -> None:
    # given
    rita = teams["rita"]
    # when
    response = team_admin_client.post(
        f"/admin/billing/user/{rita.pk}/change/",
        {
            "username": "rita",
            "email": "r@x.io",
            "is_active": "on",
            "budget_period": "month",
            "role": "operator",
            "team": teams["blue"].pk,
        },
    )
    # then
    assert response.status_code == 302, response.content
    rita.refresh_from_db()
    assert (rita.email, rita.role, rita.team) == ("r@x.io", User.Role.MEMBER, teams["red"])


def test_another_team_admin_is_view_only_and_shows_no_password_hash(team_admin_client, teams, make_user) -> None:
    # given
    tom, _ = make_user("tom", role="team_admin", team=teams["red"], password="tom-password-123")
    # when
    page = team_admin_client.get(f"/admin/billing/user/{tom.pk}/change/")
    change = team_admin_client.post(f"/admin/billing/user/{tom.pk}/change/", {"username": "tom", "email": "t@x"})
    # then
    assert page.status_code == 200
    assert 'name="email"' not in page.content.decode()
    for part in tom.password.split("$"):
        assert part not in page.content.decode()
    assert change.status_code == 403


def test_ledger_entries_are_read_only_even_for_operators(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    alice, _ = make_user("alice")
    entry = services.topup(alice, 5_000_000, actor=operator[0], note="welcome")
    base = "/admin/billing/ledgerentry/"
    # when
    listing = client.get(base)
    detail = client.get(f"{base}{entry.pk}/change/")
    edit = client.post(f"{base}{entry.pk}/change/", {"amount": 999, "kind": "topup", "note": "x"})
    add = client.get(f"{base}add/")
    delete = client.post(f"{base}{entry.pk}/delete/", {"post": "yes"})
    bulk = client.post(base, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"})
    # then
    assert listing.status_code == 200
    assert "$5.000000" in listing.content.decode()
    assert "delete_selected" not in listing.content.decode()
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert (edit.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert bulk.status_code == 200  # "no action selected"
    assert LedgerEntry.objects.get().amount == 5_000_000


def test_usage_is_read_only_and_priced_in_usd(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    alice, _ = make_user("alice")
    row = usage_row(alice, "req-1", "gpt-4o")
    # when
    listing = client.get("/admin/billing/usagelog/?model=gpt-4o&stream__exact=0")
    detail = client.get(f"/admin/billing/usagelog/{row.pk}/change/")
    delete = client.post(f"/admin/billing/usagelog/{row.pk}/delete/", {"post": "yes"})
    # then
    assert listing.status_code == 200 and "$1.234567" in listing.content.decode()
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert delete.status_code == 403


def test_user_pages_show_balance_in_usd_and_no_hashes(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    alice, _ = make_user("alice", password="alice-password-1")
    services.topup(alice, 7_000_000)
    alice.refresh_from_db()
    # when
    listing = client.get("/admin/billing/user/").content.decode()
    detail = client.get(f"/admin/billing/user/{alice.pk}/change/").content.decode()
    # then
    assert "$7.000000" in listing and "$7.000000" in detail
    assert alice.access_token_prefix in detail
    for page in (listing, detail):
        assert alice.access_token_hash not in page
        for part in alice.password.split("$")[1:]:
            assert part not in page


def test_rotating_an_access_token_shows_the_new_one_once(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    alice, old_token = make_user("alice")
    # when
    response = client.post(
        "/admin/billing/user/", {"action": "rotate_access_token", "_selected_action": [alice.pk]}, follow=True
    )
    # then
    alice.refresh_from_db()
    page = response.content.decode()
    new_token = page.split("Access token for alice: <code>")[1].split("</code>")[0]
    assert new_token.startswith("op-") and new_token != old_token
    assert alice.access_token_hash == hash_key(new_token)
    assert new_token not in client.get(f"/admin/billing/user/{alice.pk}/change/").content.decode()


def test_operator_creates_a_user_with_role_group_and_team(client, operator, teams) -> None:
    # given
    client.force_login(operator[0])
    # when
    response = client.post(
        "/admin/billing/user/add/",
        {
            "username": "ada",
            "usable_password": "true",
            "password1": "a-long-password-1",
            "password2": "a-long-password-1",
            "email": "",
            "role": "team_admin",
            "group": "",
            "team": teams["blue"].pk,
        },
    )
    # then
    assert response.status_code == 302, response.content
    ada = User.objects.get(username="ada")
    assert (ada.role, ada.team, ada.group.name, ada.is_staff) == ("team_admin", teams["blue"], "default", True)
    assert ada.access_token_hash


def test_a_team_admin_picks_token_owners_only_from_their_team(team_admin_client, teams) -> None:
    # when
    response = team_admin_client.get(
        "/admin/autocomplete/", {"app_label": "billing", "model_name": "token", "field_name": "user", "term": ""}
    )
    # then
    assert response.status_code == 200
    assert {row["text"] for row in response.json()["results"]} == {"rita", "tess"}


def test_a_team_admin_sees_usage_detail_without_channels(team_admin_client, teams) -> None:
    # given
    channel = create_channel(name="secret-upstream-account", type="openai", keys=["sk-provider-key-000000002"])
    row = usage_row(teams["rita"], "req-red", "red-model")
    UsageLog.objects.filter(pk=row.pk).update(channel=channel, key=channel.keys.get())
    # when
    listing = team_admin_client.get("/admin/billing/usagelog/").content.decode()
    detail = team_admin_client.get(f"/admin/billing/usagelog/{row.pk}/change/").content.decode()
    # then
    assert "red-model" in listing and "red-model" in detail
    for page in (listing, detail):
        assert "secret-upstream-account" not in page
        assert channel.keys.get().hint not in page
