"""Redemption codes: operators create batches, any user redeems a code once."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from billing import services
from billing.models import LedgerEntry, RedemptionCode, User

CODE = re.compile(r"^[A-HJ-NP-Z2-9]{4}(-[A-HJ-NP-Z2-9]{4}){3}$")


@pytest.mark.django_db
def test_operator_creates_a_batch_and_sees_the_codes_once(operator, api):
    # when
    response = api(operator[1]).post(
        "/api/redemptions/",
        {"name": "launch", "count": 3, "amount_usd": "5.25", "expires_at": "2999-01-01T00:00:00Z"},
        format="json",
    )
    listed = api(operator[1]).get("/api/redemptions/?name=launch")
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "launch"
    assert body["count"] == 3
    assert body["amount_usd"] == "5.250000"
    assert body["expires_at"] == "2999-01-01T00:00:00Z"
    codes = [c["code"] for c in body["codes"]]
    assert len(set(codes)) == 3 and all(CODE.match(c) for c in codes)
    rows = RedemptionCode.objects.filter(name="launch")
    assert sorted(rows.values_list("code", flat=True)) == sorted(codes)
    assert set(rows.values_list("amount", flat=True)) == {5_250_000}
    assert set(rows.values_list("created_by", flat=True)) == {operator[0].pk}
    # listed without the codes themselves
    assert listed.status_code == 200
    results = listed.json()["results"]
    assert listed.json()["count"] == 3
    assert {r["status"] for r in results} == {"unused"}
    assert all(r["code_hint"] == f"{r['code_hint'][:4]}-…" for r in results)
    assert not any(code in listed.content.decode() for code in codes)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 1, "amount_usd": "1"}, "name"),
        ({"name": "x", "count": 0, "amount_usd": "1"}, "count"),
        ({"name": "x", "count": 1001, "amount_usd": "1"}, "count"),
        ({"name": "x", "count": 1, "amount_usd": "0"}, "amount_usd"),
        ({"name": "x", "count": 1, "amount_usd": "-1"}, "amount_usd"),
        ({"name": "x", "count": 1, "amount_usd": "1", "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "count": 1, "amount_usd": "1", "code": "MINE"}, "code"),
    ],
)
def test_invalid_batches_are_a_400(operator, api, body, field):
    # when
    response = api(operator[1]).post("/api/redemptions/", body, format="json")
    # then
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not RedemptionCode.objects.exists()


@pytest.mark.django_db
def test_only_operators_create_or_list_codes(make_user, api):
    # given
    _, member = make_user("mem")
    _, tess = make_user("tess", role="team_admin")
    # when
    answers = [
        api(member).post("/api/redemptions/", {"name": "x", "count": 1, "amount_usd": "1"}, format="json"),
        api(tess).post("/api/redemptions/", {"name": "x", "count": 1, "amount_usd": "1"}, format="json"),
        api(member).get("/api/redemptions/"),
        api(tess).get("/api/redemptions/"),
    ]
    # then
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert not RedemptionCode.objects.exists()


@pytest.mark.django_db
def test_a_user_redeems_a_code_onto_their_balance(operator, make_user, api):
    # given
    bob, access = make_user("bob")
    services.topup(bob, 1_000_000)
    (code,) = services.create_redemption_codes(name="gift", count=1, amount=2_500_000, created_by=operator[0])
    typed = code.code.lower().replace("-", " ")  # case and separators do not matter
    # when
    response = api(access).post("/api/redeem/", {"code": typed}, format="json")
    # then
    assert response.status_code == 200, response.content
    assert response.json() == {"amount_usd": "2.500000", "balance_usd": "3.500000"}
    bob.refresh_from_db()
    assert bob.balance == 3_500_000
    entry = LedgerEntry.objects.get(user=bob, kind=LedgerEntry.Kind.REDEMPTION)
    assert (entry.amount, entry.balance_after, entry.actor_id) == (2_500_000, 3_500_000, bob.pk)
    assert entry.note == f"code {code.code} (gift)"
    code.refresh_from_db()
    assert code.redeemed_by_id == bob.pk and code.redeemed_at is not None


@pytest.mark.django_db
def test_a_code_is_refused_when_spent_expired_or_unknown(operator, make_user, api):
    # given
    bob, access = make_user("bob")
    eve, _ = make_user("eve")
    (spent,) = services.create_redemption_codes(name="a", count=1, amount=1_000_000)
    services.redeem(eve, spent.code)
    (expired,) = services.create_redemption_codes(
        name="b", count=1, amount=1_000_000, expires_at=timezone.now() + timedelta(seconds=30)
    )
    RedemptionCode.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when
    answers = {
        "spent": api(access).post("/api/redeem/", {"code": spent.code}, format="json"),
        "expired": api(access).post("/api/redeem/", {"code": expired.code}, format="json"),
        "unknown": api(access).post("/api/redeem/", {"code": "AAAA-BBBB-CCCC-DDDD"}, format="json"),
        "blank": api(access).post("/api/redeem/", {"code": "--"}, format="json"),
    }
    # then
    codes = {name: (a.status_code, a.json()["error"]["code"]) for name, a in answers.items()}
    assert codes == {
        "spent": (400, "code_redeemed"),
        "expired": (400, "code_expired"),
        "unknown": (400, "code_invalid"),
        "blank": (400, "code_invalid"),
    }
    bob.refresh_from_db()
    assert bob.balance == 0
    assert not LedgerEntry.objects.filter(user=bob).exists()
    assert RedemptionCode.objects.get(pk=expired.pk).redeemed_at is None


@pytest.mark.django_db
def test_redeeming_needs_an_access_token(api):
    # when
    response = api().post("/api/redeem/", {"code": "AAAA-BBBB-CCCC-DDDD"}, format="json")
    # then
    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_twenty_racing_redeems_credit_the_code_once(make_user):
    # given: 20 users' requests for the same code, released at once
    (code,) = services.create_redemption_codes(name="race", count=1, amount=7_000_000)
    racers = [make_user(f"racer{i}") for i in range(20)]
    barrier = threading.Barrier(len(racers))

    def redeem(access: str) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        try:
            barrier.wait(timeout=30)
            return client.post("/api/redeem/", {"code": code.code}, format="json").status_code
        finally:
            connection.close()  # each thread has its own connection

    # when
    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        statuses = list(pool.map(redeem, [access for _, access in racers]))
    # then
    assert sorted(statuses) == [200] + [400] * 19
    entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REDEMPTION)
    assert entries.count() == 1
    (entry,) = entries
    assert entry.amount == 7_000_000
    code.refresh_from_db()
    assert code.redeemed_by_id == entry.user_id
    balances = dict(User.objects.filter(username__startswith="racer").values_list("pk", "balance"))
    assert balances == {pk: (7_000_000 if pk == entry.user_id else 0) for pk in balances}
