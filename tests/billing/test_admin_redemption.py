"""Redemption codes in the admin: create a batch, export it as CSV, filter it."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from billing import services
from billing.models import RedemptionCode, Team

pytestmark = pytest.mark.django_db

CODES = "/admin/billing/redemptioncode/"


def rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_operator_creates_a_batch_and_downloads_it(client, operator) -> None:
    # given
    client.force_login(operator[0])
    # when
    form = client.get(f"{CODES}add/")
    created = client.post(
        f"{CODES}add/", {"name": "spring", "count": "4", "amount_usd": "2.5", "expires_at": "2999-06-01 12:00"}
    )
    listing = client.get(created["Location"])
    export = client.get(f"{CODES}export/?name=spring")
    # then
    assert form.status_code == 200 and 'name="count"' in form.content.decode()
    assert created.status_code == 302
    assert created["Location"] == f"{CODES}?name=spring"
    assert "Export this batch as CSV" in listing.content.decode()
    assert export.status_code == 200
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    assert export["Content-Disposition"] == 'attachment; filename="redemption-codes-spring.csv"'
    exported = rows(export)
    stored = RedemptionCode.objects.filter(name="spring").order_by("pk")
    assert [r["code"] for r in exported] == [c.code for c in stored]
    assert {(r["amount_usd"], r["status"], r["expires_at"]) for r in exported} == {
        ("2.500000", "unused", "2999-06-01T12:00:00+00:00")
    }
    assert stored.first().created_by == operator[0]


def test_export_action_shows_who_redeemed_what(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    bob, _ = make_user("bob")
    first, second, _unselected = services.create_redemption_codes(name="b", count=3, amount=1_000_000)
    services.redeem(bob, second.code)
    # when
    response = client.post(CODES, {"action": "export_csv", "_selected_action": [first.pk, second.pk]})
    # then
    assert response.status_code == 200
    exported = {r["code"]: (r["status"], r["redeemed_by"]) for r in rows(response)}
    assert exported == {first.code: ("unused", ""), second.code: ("redeemed", "bob")}


def test_the_status_filter(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    bob, _ = make_user("bob")
    unused, redeemed, expired = services.create_redemption_codes(name="f", count=3, amount=1)
    services.redeem(bob, redeemed.code)
    RedemptionCode.objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    # when
    pages = {s: client.get(f"{CODES}?status={s}").content.decode() for s in ("unused", "redeemed", "expired")}
    # then
    shown = {s: {c.code for c in (unused, redeemed, expired) if c.code in page} for s, page in pages.items()}
    assert shown == {"unused": {unused.code}, "redeemed": {redeemed.code}, "expired": {expired.code}}


def test_a_redeemed_code_cannot_be_deleted(client, operator, make_user) -> None:
    # given
    client.force_login(operator[0])
    bob, _ = make_user("bob")
    spare, spent = services.create_redemption_codes(name="d", count=2, amount=1)
    services.redeem(bob, spent.code)
    # when
    with_spent = client.post(
        CODES, {"action": "delete_selected", "_selected_action": [spare.pk, spent.pk], "post": "yes"}
    )
    spent_page = client.get(f"{CODES}{spent.pk}/delete/")
    left_after_refusal = set(RedemptionCode.objects.values_list("pk", flat=True))
    only_spare = client.post(CODES, {"action": "delete_selected", "_selected_action": [spare.pk], "post": "yes"})
    # then
    assert (with_spent.status_code, spent_page.status_code) == (403, 403)
    assert left_after_refusal == {spare.pk, spent.pk}
    assert only_spare.status_code == 302
    assert list(RedemptionCode.objects.values_list("pk", flat=True)) == [spent.pk]


def test_team_admins_never_see_codes(client, make_user) -> None:
    # given
    red = Team.objects.create(name="red")
    tess, _ = make_user("tess", role="team_admin", team=red)
    services.create_redemption_codes(name="secret", count=1, amount=1)
    client.force_login(tess)
    # when
    answers = [client.get(CODES), client.get(f"{CODES}add/"), client.get(f"{CODES}export/?name=secret")]
    # then
    assert [a.status_code for a in answers] == [403, 403, 403]
