"""/api/channels/: operators manage channels; keys go in and never come back out."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from billing.models import Group, Team, UsageLog
from channels_app import crypto
from channels_app.models import Channel, ChannelKey

pytestmark = pytest.mark.django_db

SECRET_A = "sk-live-AAAAaaaa1111bbbbCCCC"
SECRET_B = "sk-live-BBBBbbbb2222ccccDDDD"


def _create(api, access, **overrides):
    body = {"name": "main", "type": "openai", "models": ["gpt-4o"], **overrides}
    return api(access).post("/api/channels/", body, format="json")


def test_operator_creates_a_channel_with_keys(operator, api):
    # given
    Group.objects.create(name="vip")
    # when
    response = _create(
        api,
        operator[1],
        base_url="https://proxy.example.com/v1/",
        models=["gpt-4o", "gpt-4o-mini", "gpt-4o"],
        keys=[SECRET_A, f"  {SECRET_B}  \n\n", SECRET_A],
        groups=["default", "vip"],
        priority=5,
        weight=3,
        model_mapping={"gpt-4o": "gpt-4o-2024-08-06"},
        config={"organization": "org-1"},
        test_model="gpt-4o-mini",
        proxy_url="socks5://127.0.0.1:1080",
        include_usage=False,
        status="disabled",
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    channel = Channel.objects.get(pk=body["id"])
    assert body["key_count"] == 2 and body["healthy_key_count"] == 2
    assert body["models"] == ["gpt-4o", "gpt-4o-mini"]
    assert body["base_url"] == "https://proxy.example.com/v1"
    assert body["groups"] == ["default", "vip"]
    assert (body["priority"], body["weight"], body["status"], body["include_usage"]) == (5, 3, "disabled", False)
    assert body["model_mapping"] == {"gpt-4o": "gpt-4o-2024-08-06"}
    assert body["proxy_url"] == "socks5://127.0.0.1:1080"
    assert "keys" not in body
    assert SECRET_A.encode() not in response.content and SECRET_B.encode() not in response.content
    # stored encrypted, never in clear
    secrets = sorted(k.secret for k in channel.keys.all())
    assert all(SECRET_A not in s and SECRET_B not in s for s in secrets)
    assert sorted(crypto.decrypt(s) for s in secrets) == sorted([SECRET_A, SECRET_B])


def test_defaults(operator, api):
    # when
    body = api(operator[1]).post("/api/channels/", {"name": "bare"}, format="json").json()
    # then
    assert body["type"] == "openai"
    assert body["groups"] == ["default"]
    assert body["weight"] == 1 and body["priority"] == 0
    assert body["status"] == "enabled" and body["include_usage"] is True
    assert body["key_count"] == 0 and body["base_url"] == ""


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": "openia"}, "type"),
        ({"type": "azure", "base_url": "https://acme.openai.azure.com"}, "type"),
        ({"groups": ["nope"]}, "groups"),
        ({"groups": []}, "groups"),
        ({"groups": "default"}, "groups"),
        ({"models": "gpt-4o"}, "models"),
        ({"models": [""]}, "models"),
        ({"models": ["ok", 3]}, "models"),
        ({"model_mapping": ["a", "b"]}, "model_mapping"),
        ({"model_mapping": {"a": 1}}, "model_mapping"),
        ({"model_mapping": {"a": ""}}, "model_mapping"),
        ({"weight": 0}, "weight"),
        ({"weight": -2}, "weight"),
        ({"config": "x"}, "config"),
        ({"base_url": "api.openai.com"}, "base_url"),
        ({"base_url": "ftp://x.example"}, "base_url"),
        ({"proxy_url": "127.0.0.1:3128"}, "proxy_url"),
        ({"status": "on"}, "status"),
        ({"keys": "sk-one"}, "keys"),
        ({"keys": [{"k": "v"}]}, "keys"),
        ({"key": ["sk-typo"]}, "key"),
        ({"key_count": 3}, "key_count"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_channel_fields_are_a_400(operator, api, overrides, field):
    # when
    response = _create(api, operator[1], **overrides)
    # then
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert not Channel.objects.exists()


def test_a_bad_type_names_the_valid_ones(operator, api):
    # when
    error = _create(api, operator[1], type="openia").json()["error"]
    # then
    assert "openai" in error["message"] and "anthropic" in error["message"]


@pytest.mark.parametrize("channel_type", ["azure", "gemini", "ollama"])
def test_a_type_without_an_adapter_cannot_be_created(operator, api, channel_type):
    # when
    response = _create(api, operator[1], type=channel_type, base_url="https://acme.example.com")
    disabled = _create(api, operator[1], type=channel_type, base_url="https://acme.example.com", status="disabled")
    # then: refused, naming the type, enabled or not
    assert response.status_code == 400 and disabled.status_code == 400
    message = response.json()["error"]["fields"]["type"][0]
    assert f'"{channel_type}" has no provider adapter' in message and "anthropic" in message
    assert not Channel.objects.filter(type=channel_type).exists()


def test_list_and_detail(operator, api):
    # given
    first = _create(api, operator[1], name="one", keys=[SECRET_A, SECRET_B]).json()
    _create(api, operator[1], name="two", priority=9)
    ChannelKey.objects.filter(fingerprint=crypto.fingerprint(SECRET_B)).update(state="auto_disabled")
    # when
    listing = api(operator[1]).get("/api/channels/")
    detail = api(operator[1]).get(f"/api/channels/{first['id']}/")
    # then
    assert listing.status_code == 200
    body = listing.json()
    assert body["count"] == 2 and [c["name"] for c in body["results"]] == ["two", "one"]
    assert detail.status_code == 200
    assert detail.json()["key_count"] == 2 and detail.json()["healthy_key_count"] == 1
    for response in (listing, detail):
        assert SECRET_A.encode() not in response.content and SECRET_B.encode() not in response.content


def test_patch_returns_the_whole_channel(operator, api):
    # given
    channel = _create(api, operator[1], keys=[SECRET_A]).json()
    # when
    response = api(operator[1]).patch(
        f"/api/channels/{channel['id']}/", {"weight": 7, "models": ["o3"], "status": "disabled"}, format="json"
    )
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["weight"], body["models"], body["status"]) == (7, ["o3"], "disabled")
    assert body["name"] == "main" and body["key_count"] == 1
    assert Channel.objects.get(pk=channel["id"]).weight == 7


@pytest.mark.parametrize(
    "body",
    [{"type": "azure"}, {"weight": 0}, {"groups": ["ghost"]}, {"keys": [SECRET_B]}, {"id": 5}, {"base_url": "nope"}],
)
def test_patch_validates_like_create(operator, api, body):
    # given
    channel = _create(api, operator[1]).json()
    # when
    response = api(operator[1]).patch(f"/api/channels/{channel['id']}/", body, format="json")
    # then
    assert response.status_code == 400
    assert Channel.objects.get(pk=channel["id"]).type == "openai"


def test_a_channel_left_without_an_adapter_stays_disabled(operator, api):
    # given: an azure channel from before adapters were checked, disabled
    channel = Channel.objects.create(
        name="legacy", type="azure", base_url="https://acme.openai.azure.com", status="disabled"
    )
    url = f"/api/channels/{channel.pk}/"
    # when
    cleared = api(operator[1]).patch(url, {"base_url": ""}, format="json")
    renamed = api(operator[1]).patch(url, {"name": "renamed"}, format="json")
    enabled = api(operator[1]).patch(url, {"status": "enabled"}, format="json")
    switched = api(operator[1]).patch(
        f"/api/channels/{_create(api, operator[1]).json()['id']}/", {"type": "gemini"}, format="json"
    )
    # then: editable while disabled, never enabled, and no type is switched to one without an adapter
    assert cleared.status_code == 400
    assert renamed.status_code == 200
    assert enabled.status_code == 400 and '"azure" has no provider adapter' in enabled.json()["error"]["message"]
    assert switched.status_code == 400
    channel.refresh_from_db()
    assert channel.status == "disabled"


def test_deleting_an_unused_channel_removes_it(operator, api):
    # given
    channel = _create(api, operator[1], keys=[SECRET_A]).json()
    # when
    response = api(operator[1]).delete(f"/api/channels/{channel['id']}/")
    # then
    assert response.status_code == 204
    assert not Channel.objects.filter(pk=channel["id"]).exists()
    assert not ChannelKey.objects.exists()


def test_deleting_a_used_channel_disables_and_hides_it(operator, api):
    # given
    channel_id = _create(api, operator[1], keys=[SECRET_A]).json()["id"]
    usage = UsageLog.objects.create(
        request_id=uuid.uuid4().hex, created_at=timezone.now(), user=operator[0], channel_id=channel_id,
        endpoint="/v1/chat/completions", model="gpt-4o", status=200,
    )  # fmt: skip
    client = api(operator[1])
    # when
    response = client.delete(f"/api/channels/{channel_id}/")
    # then
    assert response.status_code == 204
    channel = Channel.objects.get(pk=channel_id)
    assert channel.deleted_at is not None and channel.status == "disabled"
    assert client.get(f"/api/channels/{channel_id}/").status_code == 404
    assert client.patch(f"/api/channels/{channel_id}/", {"status": "enabled"}, format="json").status_code == 404
    assert client.get(f"/api/channels/{channel_id}/keys/").status_code == 404
    assert client.get("/api/channels/").json()["count"] == 0
    assert client.get("/api/usage/").json()["results"][0]["channel"] == channel_id == usage.channel_id


@pytest.mark.parametrize("role", ["team_admin", "member"])
def test_only_operators_reach_channel_endpoints(operator, make_user, api, role):
    # given
    channel_id = _create(api, operator[1], keys=[SECRET_A]).json()["id"]
    key_id = ChannelKey.objects.get().pk
    _, access = make_user("someone", role=role, team=Team.objects.create(name="red"))
    client = api(access)
    # when
    responses = [
        client.get("/api/channels/"),
        client.post("/api/channels/", {"name": "mine"}, format="json"),
        client.get(f"/api/channels/{channel_id}/"),
        client.patch(f"/api/channels/{channel_id}/", {"weight": 9}, format="json"),
        client.delete(f"/api/channels/{channel_id}/"),
        client.get(f"/api/channels/{channel_id}/keys/"),
        client.post(f"/api/channels/{channel_id}/keys/", {"keys": ["sk-x-123456789"]}, format="json"),
        client.patch(f"/api/channels/{channel_id}/keys/{key_id}/", {"status": "active"}, format="json"),
        client.delete(f"/api/channels/{channel_id}/keys/{key_id}/"),
    ]
    # then
    assert [r.status_code for r in responses] == [403] * len(responses)
    assert all(r.json()["error"]["code"] == "permission_denied" for r in responses)
    assert Channel.objects.get().weight == 1 and ChannelKey.objects.count() == 1
