"""Relay tokens in the admin: the key is shown once, at creation, and never again."""

from __future__ import annotations

import re
from typing import Any

import pytest

from billing import services
from billing.models import Token
from relay.relay_keys import hash_key

pytestmark = pytest.mark.django_db

TOKENS = "/admin/billing/token/"
KEY = re.compile(r"sk-[A-Za-z0-9]{48}")


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator[0])
    return client


def token_form(user_id: int, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user": user_id,
        "name": "ci",
        "expires_at_0": "",
        "expires_at_1": "",
        "quota_usd": "",
        "models": "",
        "subnets": "",
        "rpm_limit": "",
        "tpm_limit": "",
        "rpd_limit": "",
        "concurrency_limit": "",
    }
    data.update(overrides)
    return data


def test_adding_a_token_shows_its_key_exactly_once(operator_client, make_user) -> None:
    # given
    alice, _ = make_user("alice")
    # when
    response = operator_client.post(
        f"{TOKENS}add/",
        token_form(alice.pk, quota_usd="12.5", models="gpt-4o\ngpt-4o-mini", subnets="10.0.0.0/8", rpm_limit="60"),
        follow=True,
    )
    # then the page after the redirect carries the key
    assert response.status_code == 200
    keys = set(KEY.findall(response.content.decode()))
    assert len(keys) == 1
    key = keys.pop()
    token = Token.objects.get()
    # only its hash and display prefix are stored
    assert token.key_hash == hash_key(key)
    assert token.key_prefix == key[:7] + "…" + key[-4:]
    assert key not in {str(value) for value in Token.objects.values().get().values()}
    assert (token.user, token.name, token.quota, token.rpm_limit) == (alice, "ci", 12_500_000, 60)
    assert token.models == ["gpt-4o", "gpt-4o-mini"]
    assert token.subnets == ["10.0.0.0/8"]
    # and it is never shown again
    for url in (f"{TOKENS}{token.pk}/change/", TOKENS, f"{TOKENS}{token.pk}/history/"):
        later = operator_client.get(url)
        assert later.status_code == 200
        assert key not in later.content.decode()
        assert token.key_hash not in later.content.decode()
    assert token.key_prefix in operator_client.get(TOKENS).content.decode()


def test_the_key_cannot_be_edited(operator_client, make_user) -> None:
    # given
    alice, _ = make_user("alice")
    token, key = services.create_token(user=alice, name="ci")
    # when
    response = operator_client.post(
        f"{TOKENS}{token.pk}/change/",
        token_form(alice.pk, status="disabled", key_hash=hash_key("sk-mine"), key_prefix="sk-mine", quota_usd="1"),
    )
    # then
    assert response.status_code == 302, response.content
    token.refresh_from_db()
    assert token.key_hash == hash_key(key)
    assert token.status == Token.Status.DISABLED
    assert token.quota == 1_000_000


def test_quota_and_usage_are_listed_in_usd(operator_client, make_user) -> None:
    # given
    alice, _ = make_user("alice")
    token, _ = services.create_token(user=alice, name="ci", quota=2_500_000)
    Token.objects.filter(pk=token.pk).update(used=1_250_000)
    # when
    page = operator_client.get(TOKENS).content.decode()
    form = operator_client.get(f"{TOKENS}{token.pk}/change/").content.decode()
    # then
    assert "$2.500000" in page and "$1.250000" in page
    assert 'name="quota_usd" value="2.500000"' in form


def test_bad_subnets_are_refused(operator_client, make_user) -> None:
    # given
    alice, _ = make_user("alice")
    # when
    response = operator_client.post(f"{TOKENS}add/", token_form(alice.pk, subnets="10.0.0.0/8\nnot-a-net"))
    # then
    assert response.status_code == 200
    assert "is not an IP network" in response.content.decode()
    assert not Token.objects.exists()


def test_disable_action_and_delete_of_an_unused_token(operator_client, make_user) -> None:
    # given
    alice, _ = make_user("alice")
    token, _ = services.create_token(user=alice, name="ci")
    # when
    operator_client.post(TOKENS, {"action": "disable", "_selected_action": [token.pk]})
    # then
    token.refresh_from_db()
    assert token.status == Token.Status.DISABLED
    # when
    response = operator_client.post(f"{TOKENS}{token.pk}/delete/", {"post": "yes"})
    # then
    assert response.status_code == 302
    assert not Token.objects.exists()
