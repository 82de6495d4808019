"""The channel and key admin: keys stay masked, pasted keys are added once,
operator verbs change state, soft-deleted rows stay out of the way."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from billing.models import UsageLog
from channels_app import services
from channels_app.models import Channel, ChannelKey

pytestmark = pytest.mark.django_db

SECRET = "sk-proj-PLAINTEXTsecretKEY0123456789abcdWXYZ"
CHANNELS = "/admin/channels_app/channel/"
KEYS = "/admin/channels_app/channelkey/"


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator[0])
    return client


@pytest.fixture
def channel() -> Channel:
    return services.create_channel(name="main-openai", type="openai", models=["gpt-4o", "gpt-4o-mini"], keys=[SECRET])


def channel_form(channel: Channel | None = None, **overrides: Any) -> dict[str, Any]:
    """POST data for the channel add/change form, inline key rows included."""
    source = channel or Channel(name="new-channel", type="openai")
    keys = list(channel.keys.live()) if channel else []
    data: dict[str, Any] = {
        "name": source.name,
        "type": source.type,
        "base_url": source.base_url,
        "status": source.status,
        "models": "\n".join(source.models),
        "model_mapping": "{}",
        "groups": "\n".join(source.groups),
        "priority": source.priority,
        "weight": source.weight,
        "test_model": source.test_model,
        "include_usage": "on",
        "proxy_url": "",
        "config": "{}",
        "connect_timeout": source.connect_timeout,
        "first_byte_timeout": source.first_byte_timeout,
        "idle_timeout": source.idle_timeout,
        "new_keys": "",
        "keys-TOTAL_FORMS": len(keys),
        "keys-INITIAL_FORMS": len(keys),
        "keys-MIN_NUM_FORMS": 0,
        "keys-MAX_NUM_FORMS": 1000,
    }
    for i, key in enumerate(keys):
        data[f"keys-{i}-id"] = key.pk
        data[f"keys-{i}-channel"] = channel.pk if channel else ""
        data[f"keys-{i}-rpm_limit"] = key.rpm_limit or ""
        data[f"keys-{i}-tpm_limit"] = key.tpm_limit or ""
    data.update(overrides)
    return data


def assert_no_secret(content: bytes, key: ChannelKey) -> None:
    text = content.decode()
    assert SECRET not in text
    assert key.secret not in text  # the ciphertext
    assert key.fingerprint not in text  # the SHA-256 of the key


def test_channel_pages_render_keys_masked(operator_client, channel) -> None:
    # given
    key = channel.keys.get()
    pages = [
        CHANNELS,
        f"{CHANNELS}{channel.pk}/change/",
        f"{CHANNELS}{channel.pk}/history/",
        f"{CHANNELS}add/",
        KEYS,
        f"{KEYS}{key.pk}/change/",
        f"{KEYS}?q=WXYZ",
    ]
    for url in pages:
        # when
        response = operator_client.get(url)
        # then
        assert response.status_code == 200, url
        assert_no_secret(response.content, key)
    assert key.hint in operator_client.get(f"{CHANNELS}{channel.pk}/change/").content.decode()


def test_changelist_shows_healthy_over_total_keys(operator_client, channel) -> None:
    # given
    cooling, disabled = services.add_keys(channel, ["sk-second-key-000000000001", "sk-third-key-0000000000002"])
    services.set_key_state(cooling, ChannelKey.State.COOLING)
    services.set_key_state(disabled, ChannelKey.State.AUTO_DISABLED)
    # when
    response = operator_client.get(CHANNELS)
    # then
    assert response.status_code == 200
    assert re.search(r'class="field-keys_health"><a href="[^"]+">1 / 3</a><', response.content.decode())
    keys = operator_client.get(f"{KEYS}?channel__id__exact={channel.pk}")
    assert keys.status_code == 200
    assert "3 channel keys" in keys.content.decode()


def test_pasting_keys_adds_new_ones_and_skips_duplicates(operator_client, channel) -> None:
    # given
    pasted = f"sk-new-key-aaaaaaaaaaaa1\n\n  {SECRET}  \nsk-new-key-bbbbbbbbbbbb2\nsk-new-key-aaaaaaaaaaaa1\n"
    # when
    response = operator_client.post(
        f"{CHANNELS}{channel.pk}/change/", channel_form(channel, new_keys=pasted), follow=True
    )
    # then
    assert response.status_code == 200
    assert "Added 2 key(s); skipped 1 already in this channel." in response.content.decode()
    assert sorted(k.reveal() for k in channel.keys.all()) == sorted(
        [SECRET, "sk-new-key-aaaaaaaaaaaa1", "sk-new-key-bbbbbbbbbbbb2"]
    )
    assert "sk-new-key-aaaaaaaaaaaa1" not in response.content.decode()


def test_adding_a_channel_with_pasted_keys(operator_client) -> None:
    # when
    response = operator_client.post(
        f"{CHANNELS}add/",
        channel_form(
            name="fresh", models="gpt-4o\ngpt-4o-mini", groups="default", new_keys="sk-a-000000001\nsk-b-000000002"
        ),
    )
    # then
    assert response.status_code == 302, response.content
    channel = Channel.objects.get(name="fresh")
    assert channel.models == ["gpt-4o", "gpt-4o-mini"]
    assert channel.groups == ["default"]
    assert channel.keys.count() == 2


def test_form_errors_never_echo_pasted_keys(operator_client, channel) -> None:
    # when
    response = operator_client.post(
        f"{CHANNELS}{channel.pk}/change/", channel_form(channel, weight=0, new_keys="sk-pasted-but-invalid-form-01")
    )
    # then
    assert response.status_code == 200  # redisplayed with errors
    assert "errornote" in response.content.decode()
    assert "sk-pasted-but-invalid-form-01" not in response.content.decode()
    assert channel.keys.count() == 1


def test_unknown_groups_are_refused(operator_client, channel) -> None:
    # when
    response = operator_client.post(f"{CHANNELS}{channel.pk}/change/", channel_form(channel, groups="default\nvipp"))
    # then
    assert response.status_code == 200
    assert "Unknown group(s): vipp." in response.content.decode()
    channel.refresh_from_db()
    assert channel.groups == ["default"]


def test_enable_and_disable_channel_actions(operator_client, channel) -> None:
    # given
    other = services.create_channel(name="backup", type="deepseek")
    selected = {"_selected_action": [channel.pk, other.pk]}
    # when
    operator_client.post(CHANNELS, {"action": "disable", **selected})
    # then
    assert set(Channel.objects.values_list("status", flat=True)) == {Channel.Status.DISABLED}
    # when
    operator_client.post(CHANNELS, {"action": "enable", **selected})
    # then
    assert set(Channel.objects.values_list("status", flat=True)) == {Channel.Status.ENABLED}


def test_enable_and_disable_key_actions(operator_client, operator, channel) -> None:
    # given
    key = channel.keys.get()
    services.set_key_state(key, ChannelKey.State.AUTO_DISABLED, "401 invalid key")
    # when
    operator_client.post(KEYS, {"action": "disable", "_selected_action": [key.pk]})
    # then
    key.refresh_from_db()
    assert key.state == ChannelKey.State.MANUAL_DISABLED
    assert key.state_reason == f"set by {operator[0].username}"
    # when
    operator_client.post(KEYS, {"action": "enable", "_selected_action": [key.pk]})
    # then
    key.refresh_from_db()
    assert key.state == ChannelKey.State.ACTIVE
    assert key.state_reason == f"set by {operator[0].username}"


def test_key_state_edited_on_its_page_records_who(operator_client, operator, channel) -> None:
    # given
    key = channel.keys.get()
    # when
    response = operator_client.post(
        f"{KEYS}{key.pk}/change/", {"state": ChannelKey.State.MANUAL_DISABLED, "rpm_limit": 60, "tpm_limit": ""}
    )
    # then
    assert response.status_code == 302, response.content
    key.refresh_from_db()
    assert (key.state, key.state_reason, key.rpm_limit) == (
        ChannelKey.State.MANUAL_DISABLED,
        f"set by {operator[0].username}",
        60,
    )
    assert key.state_changed_at is not None


def test_keys_cannot_be_added_one_by_one(operator_client) -> None:
    # when
    response = operator_client.get(f"{KEYS}add/")
    # then
    assert response.status_code == 403


def test_soft_deleted_channels_are_hidden_by_default(operator_client, channel) -> None:
    # given
    gone = services.create_channel(name="retired-channel", type="openai")
    Channel.objects.filter(pk=gone.pk).update(deleted_at=timezone.now())
    # when
    default = operator_client.get(CHANNELS).content.decode()
    everything = operator_client.get(f"{CHANNELS}?deleted=all").content.decode()
    deleted_only = operator_client.get(f"{CHANNELS}?deleted=yes").content.decode()
    # then
    assert "main-openai" in default and "retired-channel" not in default
    assert "main-openai" in everything and "retired-channel" in everything
    assert "main-openai" not in deleted_only and "retired-channel" in deleted_only


def test_deleting_a_used_channel_hides_it(operator_client, operator, channel) -> None:
    # given
    UsageLog.objects.create(
        request_id="req-1",
        created_at=timezone.now(),
        user=operator[0],
        endpoint="chat",
        model="gpt-4o",
        channel=channel,
        key=channel.keys.get(),
        status=200,
    )
    # when
    confirm = operator_client.get(f"{CHANNELS}{channel.pk}/delete/")
    response = operator_client.post(f"{CHANNELS}{channel.pk}/delete/", {"post": "yes"})
    # then
    assert confirm.status_code == 200
    assert_no_secret(confirm.content, channel.keys.get())
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.deleted_at is not None
    assert channel.status == Channel.Status.DISABLED


def test_deleting_a_key_inline_uses_the_soft_delete_rule(operator_client, operator, channel) -> None:
    # given
    used = channel.keys.get()
    unused = services.add_keys(channel, ["sk-never-used-0000000001"])[0]
    UsageLog.objects.create(
        request_id="req-2",
        created_at=timezone.now(),
        user=operator[0],
        endpoint="chat",
        model="gpt-4o",
        channel=channel,
        key=used,
        status=200,
    )
    data = channel_form(channel, **{"keys-0-DELETE": "on", "keys-1-DELETE": "on"})
    # when
    response = operator_client.post(f"{CHANNELS}{channel.pk}/change/", data)
    # then
    assert response.status_code == 302, response.content
    assert not ChannelKey.objects.filter(pk=unused.pk).exists()
    used.refresh_from_db()
    assert used.deleted_at is not None
    assert used.state == ChannelKey.State.MANUAL_DISABLED
