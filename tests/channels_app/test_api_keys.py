"""/api/channels/{id}/keys/: masked rows only, state changes by operators, soft delete when used."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from billing.models import UsageLog
from channels_app import services
from channels_app.models import Channel, ChannelKey

pytestmark = pytest.mark.django_db

SECRET_A = "sk-proj-AAAAaaaa1111bbbbWXYZ"
SECRET_B = "sk-proj-BBBBbbbb2222ccccQRST"
SECRET_C = "sk-proj-CCCCcccc3333ddddLMNO"

KEY_FIELDS = {
    "id", "channel", "hint", "state", "state_reason", "state_changed_at", "cooldown_until", "last_used_at",
    "last_success_at", "last_error", "last_error_at", "latency_ms", "rpm_limit", "tpm_limit", "created_at",
}  # fmt: skip


@pytest.fixture
def channel():
    return services.create_channel(name="main", type="openai", models=["gpt-4o"], keys=[SECRET_A, SECRET_B])


def _no_secrets(response) -> None:
    for secret in (SECRET_A, SECRET_B, SECRET_C):
        assert secret.encode() not in response.content


def test_list_shows_masked_rows(operator, channel, api):
    # given
    key = channel.keys.first()
    key.last_error = f"Incorrect API key provided: {SECRET_A}"
    key.save()
    # when
    response = api(operator[1]).get(f"/api/channels/{channel.pk}/keys/")
    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert all(set(row) == KEY_FIELDS for row in body["results"])
    assert [row["hint"] for row in body["results"]] == ["sk-…WXYZ", "sk-…QRST"]
    assert body["results"][0]["last_error"] == "Incorrect API key provided: sk-…WXYZ"
    _no_secrets(response)


def test_secrets_are_encrypted_at_rest(channel):
    # then
    for key, secret in zip(channel.keys.order_by("id"), (SECRET_A, SECRET_B), strict=True):
        assert secret not in key.secret
        assert key.reveal() == secret


def test_add_keys_reports_added_and_skipped(operator, channel, api):
    # when: one new key, one already pooled, one repeated, blank lines
    response = api(operator[1]).post(
        f"/api/channels/{channel.pk}/keys/",
        {"keys": [SECRET_A, f"{SECRET_C}\n\n{SECRET_C}", "   "]},
        format="json",
    )
    # then
    assert response.status_code == 201
    body = response.json()
    assert (body["added"], body["skipped"]) == (1, 2)
    (row,) = body["keys"]
    assert set(row) == KEY_FIELDS and row["hint"] == "sk-…LMNO" and row["state"] == "active"
    _no_secrets(response)
    assert channel.keys.live().count() == 3
    assert ChannelKey.objects.get(pk=row["id"]).reveal() == SECRET_C


@pytest.mark.parametrize("body", [{"keys": []}, {"keys": "sk-x"}, {}, {"key": [SECRET_C]}, {"keys": [1]}])
def test_add_keys_rejects_bad_bodies(operator, channel, api, body):
    # when
    response = api(operator[1]).post(f"/api/channels/{channel.pk}/keys/", body, format="json")
    # then
    assert response.status_code == 400
    assert channel.keys.count() == 2


def test_operator_disables_and_reenables_a_key(operator, channel, api):
    # given
    key = channel.keys.first()
    url = f"/api/channels/{channel.pk}/keys/{key.pk}/"
    # when
    disabled = api(operator[1]).patch(url, {"state": "manual_disabled"}, format="json")
    # then
    assert disabled.status_code == 200
    listed = api(operator[1]).get(f"/api/channels/{channel.pk}/keys/").json()["results"]
    assert disabled.json() == next(row for row in listed if row["id"] == key.pk)
    assert set(disabled.json()) == KEY_FIELDS
    assert disabled.json()["state"] == "manual_disabled"
    assert disabled.json()["state_reason"] == "set by op"
    _no_secrets(disabled)
    key.refresh_from_db()
    assert key.state == "manual_disabled" and key.state_changed_at is not None
    assert api(operator[1]).get(f"/api/channels/{channel.pk}/").json()["healthy_key_count"] == 1
    # when
    enabled = api(operator[1]).patch(url, {"state": "active"}, format="json")
    # then
    assert enabled.json()["state"] == "active"


def test_status_is_an_alias_of_state(operator, channel, api):
    # given
    key = channel.keys.first()
    url = f"/api/channels/{channel.pk}/keys/{key.pk}/"
    # when
    disabled = api(operator[1]).patch(url, {"status": "manual_disabled"}, format="json")
    both = api(operator[1]).patch(url, {"state": "active", "status": "active"}, format="json")
    # then
    assert disabled.status_code == 200 and set(disabled.json()) == KEY_FIELDS
    assert disabled.json()["state"] == "manual_disabled"
    assert both.status_code == 200 and both.json()["state"] == "active"


def test_state_and_status_that_differ_are_refused(operator, channel, api):
    # given
    key = channel.keys.first()
    # when
    response = api(operator[1]).patch(
        f"/api/channels/{channel.pk}/keys/{key.pk}/", {"state": "manual_disabled", "status": "active"}, format="json"
    )
    # then
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"status"}
    key.refresh_from_db()
    assert key.state == "active"


def test_reenabling_a_cooling_key_clears_its_cooldown(operator, channel, api):
    # given
    key = channel.keys.first()
    services.set_key_state(key, "cooling", "429")
    ChannelKey.objects.filter(pk=key.pk).update(cooldown_until=timezone.now())
    # when
    response = api(operator[1]).patch(f"/api/channels/{channel.pk}/keys/{key.pk}/", {"state": "active"}, format="json")
    # then
    assert response.json()["state"] == "active"
    assert response.json()["cooldown_until"] is None


def test_patch_sets_key_limits(operator, channel, api):
    # given
    key = channel.keys.first()
    ChannelKey.objects.filter(pk=key.pk).update(last_error="upstream said no")  # written by the relay meanwhile
    # when
    response = api(operator[1]).patch(
        f"/api/channels/{channel.pk}/keys/{key.pk}/", {"rpm_limit": 500, "tpm_limit": None}, format="json"
    )
    # then
    assert response.status_code == 200
    assert response.json()["rpm_limit"] == 500 and response.json()["state"] == "active"
    key.refresh_from_db()
    assert key.rpm_limit == 500 and key.last_error == "upstream said no"


@pytest.mark.parametrize(
    "body",
    [
        {"state": "auto_disabled"},
        {"state": "cooling"},
        {"status": "auto_disabled"},
        {"status": "cooling"},
        {"state": "manual_disabled", "rpm_limit": 0},
        {"hint": "sk-…"},
        {"rpm_limit": 0},
        {},
    ],
)
def test_patch_rejects_other_states_and_fields(operator, channel, api, body):
    # given
    key = channel.keys.first()
    # when
    response = api(operator[1]).patch(f"/api/channels/{channel.pk}/keys/{key.pk}/", body, format="json")
    # then
    assert response.status_code == 400
    key.refresh_from_db()
    assert key.state == "active" and key.rpm_limit is None


def test_a_key_of_another_channel_is_404(operator, channel, api):
    # given
    other = services.create_channel(name="other", keys=[SECRET_C])
    foreign = other.keys.get()
    # when
    patch = api(operator[1]).patch(
        f"/api/channels/{channel.pk}/keys/{foreign.pk}/", {"status": "manual_disabled"}, format="json"
    )
    delete = api(operator[1]).delete(f"/api/channels/{channel.pk}/keys/{foreign.pk}/")
    unknown = api(operator[1]).get("/api/channels/424242/keys/")
    # then
    assert (patch.status_code, delete.status_code, unknown.status_code) == (404, 404, 404)
    foreign.refresh_from_db()
    assert foreign.state == "active"


def test_deleting_an_unused_key_removes_it(operator, channel, api):
    # given
    key = channel.keys.first()
    # when
    response = api(operator[1]).delete(f"/api/channels/{channel.pk}/keys/{key.pk}/")
    # then
    assert response.status_code == 204
    assert not ChannelKey.objects.filter(pk=key.pk).exists()


def test_deleting_a_used_key_disables_and_hides_it(operator, channel, api):
    # given
    key = channel.keys.first()
    UsageLog.objects.create(
        request_id=uuid.uuid4().hex, created_at=timezone.now(), user=operator[0], channel=channel, key=key,
        endpoint="/v1/chat/completions", model="gpt-4o", status=200,
    )  # fmt: skip
    client = api(operator[1])
    # when
    response = client.delete(f"/api/channels/{channel.pk}/keys/{key.pk}/")
    # then
    assert response.status_code == 204
    key.refresh_from_db()
    assert key.deleted_at is not None and key.state == "manual_disabled"
    listing = client.get(f"/api/channels/{channel.pk}/keys/").json()
    assert key.pk not in [row["id"] for row in listing["results"]] and listing["count"] == 1
    assert (
        client.patch(f"/api/channels/{channel.pk}/keys/{key.pk}/", {"status": "active"}, format="json").status_code
        == 404
    )
    assert client.delete(f"/api/channels/{channel.pk}/keys/{key.pk}/").status_code == 404
    assert client.get(f"/api/channels/{channel.pk}/").json()["key_count"] == 1
    assert client.get("/api/usage/").json()["results"][0]["key_id"] == key.pk
    # and the same secret can be pooled again
    again = client.post(f"/api/channels/{channel.pk}/keys/", {"keys": [SECRET_A]}, format="json").json()
    assert again["added"] == 1


def test_no_response_ever_echoes_a_secret(operator, api):
    # given
    client = api(operator[1])
    # when: every channel route that touches keys
    created = client.post("/api/channels/", {"name": "c", "keys": [SECRET_A]}, format="json")
    channel_id = created.json()["id"]
    key_id = Channel.objects.get(pk=channel_id).keys.get().pk
    responses = [
        created,
        client.get("/api/channels/"),
        client.get(f"/api/channels/{channel_id}/"),
        client.patch(f"/api/channels/{channel_id}/", {"name": "c2"}, format="json"),
        client.get(f"/api/channels/{channel_id}/keys/"),
        client.post(f"/api/channels/{channel_id}/keys/", {"keys": [SECRET_B, SECRET_A]}, format="json"),
        client.patch(f"/api/channels/{channel_id}/keys/{key_id}/", {"status": "manual_disabled"}, format="json"),
        client.post(f"/api/channels/{channel_id}/keys/", {"keys": SECRET_C}, format="json"),  # a 400 too
    ]
    # then
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200, 201, 200, 400]
    for response in responses:
        _no_secrets(response)
