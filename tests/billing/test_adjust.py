"""Balance adjustments by operators: API and the admin's "Adjust balance" action."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import LedgerEntry, Team

pytestmark = pytest.mark.django_db


def test_operator_adjusts_a_balance_up_and_down(operator, make_user, api):
    # given
    bob, _ = make_user("bob")
    services.topup(bob, 10_000_000)
    # when
    up = api(operator[1]).post(f"/api/users/{bob.pk}/adjust/", {"amount_usd": "1.5", "note": "goodwill"}, format="json")
    down = api(operator[1]).post(
        f"/api/users/{bob.pk}/adjust/", {"amount_usd": "-12.000001", "note": "clawback"}, format="json"
    )
    # then
    assert up.status_code == 200, up.content
    assert up.json()["balance_usd"] == "11.500000"
    assert down.status_code == 200, down.content
    assert down.json()["balance_usd"] == "-0.500001"
    entries = list(LedgerEntry.objects.filter(user=bob, kind="adjustment").order_by("pk"))
    assert [(e.amount, e.balance_after, e.note, e.actor_id) for e in entries] == [
        (1_500_000, 11_500_000, "goodwill", operator[0].pk),
        (-12_000_001, -500_001, "clawback", operator[0].pk),
    ]
    bob.refresh_from_db()
    assert bob.balance == -500_001


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount_usd": "1"}, "note"),
        ({"amount_usd": "1", "note": ""}, "note"),
        ({"amount_usd": "0", "note": "x"}, "amount_usd"),
        ({"amount_usd": "-0.000000", "note": "x"}, "amount_usd"),
        ({"amount_usd": "0.0000001", "note": "x"}, "amount_usd"),
        ({"amount_usd": "abc", "note": "x"}, "amount_usd"),
        ({"note": "x"}, "amount_usd"),
    ],
)
def test_invalid_adjustments_are_a_400(operator, make_user, api, body, field):
    # given
    bob, _ = make_user("bob")
    # when
    response = api(operator[1]).post(f"/api/users/{bob.pk}/adjust/", body, format="json")
    # then
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not LedgerEntry.objects.filter(user=bob).exists()


def test_only_operators_adjust(make_user, api):
    # given
    red = Team.objects.create(name="red")
    _, tess = make_user("tess", role="team_admin", team=red)
    rita, rita_access = make_user("rita", team=red)
    body = {"amount_usd": "100", "note": "please"}
    # when
    by_team_admin = api(tess).post(f"/api/users/{rita.pk}/adjust/", body, format="json")
    by_herself = api(rita_access).post(f"/api/users/{rita.pk}/adjust/", body, format="json")
    # then
    assert (by_team_admin.status_code, by_herself.status_code) == (403, 403)
    rita.refresh_from_db()
    assert rita.balance == 0
    assert not LedgerEntry.objects.exists()


def test_admin_action_asks_then_adjusts_each_selected_user(client, operator, make_user):
    # given
    client.force_login(operator[0])
    bob, _ = make_user("bob")
    ann, _ = make_user("ann")
    services.topup(bob, 2_000_000)
    selected = {"action": "adjust_balance", "_selected_action": [bob.pk, ann.pk]}
    # when
    page = client.post("/admin/billing/user/", selected)
    refused = client.post("/admin/billing/user/", {**selected, "apply": "Adjust", "amount_usd": "0", "note": "x"})
    done = client.post(
        "/admin/billing/user/", {**selected, "apply": "Adjust", "amount_usd": "-0.25", "note": "fee"}, follow=True
    )
    # then
    assert page.status_code == 200
    assert "Adjust balance" in page.content.decode() and 'name="amount_usd"' in page.content.decode()
    assert refused.status_code == 200 and "Must not be zero." in refused.content.decode()
    assert done.status_code == 200
    assert "Adjusted 2 balance(s) by $-0.250000." in done.content.decode()
    bob.refresh_from_db()
    ann.refresh_from_db()
    assert (bob.balance, ann.balance) == (1_750_000, -250_000)
    notes = set(LedgerEntry.objects.filter(kind="adjustment").values_list("user_id", "amount", "note", "actor_id"))
    assert notes == {(bob.pk, -250_000, "fee", operator[0].pk), (ann.pk, -250_000, "fee", operator[0].pk)}


def test_team_admins_do_not_get_the_adjust_action(client, make_user):
    # given
    red = Team.objects.create(name="red")
    tess, _ = make_user("tess", role="team_admin", team=red, password="tess-password-1")
    rita, _ = make_user("rita", team=red)
    client.force_login(tess)
    # when
    page = client.get("/admin/billing/user/")
    forced = client.post(
        "/admin/billing/user/",
        {"action": "adjust_balance", "_selected_action": [rita.pk], "apply": "1", "amount_usd": "5", "note": "x"},
    )
    # then
    assert page.status_code == 200 and "adjust_balance" not in page.content.decode()
    assert forced.status_code in (200, 302)
    rita.refresh_from_db()
    assert rita.balance == 0
