"""Requests keep succeeding while keys fail: passive health, retries, tiers."""

from __future__ import annotations

import time
from collections import Counter

import openai
import pytest
import requests

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_channels(relay_setup):
    """Channel A (priority 10): [good, invalid (401), rate-limited (429, Retry-After 30)];
    channel B (priority 0): one good key."""
    from channels_app.models import Channel, ChannelKey
    from channels_app.services import add_keys, create_channel

    emulator = relay_setup["emulator"]
    emulator.set_key_behaviour("sk-invalid", "invalid")
    emulator.set_key_behaviour("sk-limited", "rate_limited", retry_after=30)
    emulator.set_key_behaviour("sk-channel-b", "ok")
    a = relay_setup["channel"]
    Channel.objects.filter(pk=a.pk).update(priority=10)
    add_keys(a, ["sk-invalid", "sk-limited"])
    b = create_channel(
        name="b", type="openai", base_url=emulator.base_url, models=["gpt-4o-mini"], priority=0, keys=["sk-channel-b"]
    )
    keys = {k.reveal(): k for k in ChannelKey.objects.all()}
    return {**relay_setup, "a": a, "b": b, "keys": keys}


def used_keys(emulator) -> Counter:
    return Counter(r["key"] for r in emulator.requests)


def test_pool_serves_200_requests_without_a_client_error(two_channels, gateway):
    # given
    from channels_app.models import ChannelKey, KeyEvent

    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=two_channels["key"], max_retries=0)
    emulator = two_channels["emulator"]
    # when
    for i in range(200):
        messages = [{"role": "user", "content": f"request {i}"}]
        if i % 2:
            assert list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
        else:
            assert sdk.chat.completions.create(model="gpt-4o-mini", messages=messages).choices
    # then: each bad key was tried once, then left alone
    counts = used_keys(emulator)
    assert counts["sk-invalid"] == 1
    assert counts["sk-limited"] == 1  # no request during its 30 s cooldown
    assert counts["sk-upstream-good"] + counts["sk-channel-b"] == 200
    invalid, limited = two_channels["keys"]["sk-invalid"], two_channels["keys"]["sk-limited"]
    invalid = wait_for(lambda: ChannelKey.objects.filter(pk=invalid.pk, state="auto_disabled").first())
    assert invalid.state_reason == "invalid_key" and "sk-invalid" not in invalid.last_error
    limited = wait_for(lambda: ChannelKey.objects.filter(pk=limited.pk, state="cooling").first())
    assert 25 < limited.cooldown_until.timestamp() - time.time() <= 31
    assert KeyEvent.objects.filter(key=invalid, to_state="auto_disabled", source="relay").count() == 1


def test_usage_log_records_the_serving_key_and_attempts(two_channels, gateway):
    from billing.models import UsageLog
    from channels_app.models import ChannelKey

    good = two_channels["keys"]["sk-upstream-good"]
    ChannelKey.objects.filter(pk=good.pk).update(state="manual_disabled")
    gateway.reload()
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=two_channels["key"], max_retries=0)
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    row = wait_for(lambda: UsageLog.objects.first())
    # invalid and rate-limited keys of A first (in rotation order), then B
    assert row.attempts == 3 and row.channel_id == two_channels["b"].pk
    assert row.key_id == two_channels["keys"]["sk-channel-b"].pk


def test_traffic_moves_to_lower_tier_then_fails_fast_when_all_down(two_channels, gateway):
    from channels_app.models import ChannelKey

    # given: every key of A is bad
    ChannelKey.objects.filter(pk=two_channels["keys"]["sk-upstream-good"].pk).update(state="manual_disabled")
    gateway.reload()
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=two_channels["key"], max_retries=0)
    for _ in range(5):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert used_keys(two_channels["emulator"])["sk-channel-b"] == 5
    # when: B goes down too
    two_channels["emulator"].set_key_behaviour("sk-channel-b", "invalid")
    started = time.monotonic()
    first = requests.post(
        f"{gateway.base_url}/chat/completions",
        timeout=5,
        headers={"Authorization": f"Bearer {two_channels['key']}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    second = requests.post(
        f"{gateway.base_url}/chat/completions",
        timeout=5,
        headers={"Authorization": f"Bearer {two_channels['key']}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    elapsed = time.monotonic() - started
    # then: the first learns B's key is dead (502), the next gets 429 (A's key cooling) at once
    assert first.status_code == 502
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
    assert second.json()["error"]["code"] == "keys_cooling"
    assert elapsed < 1.0


def test_no_usable_key_at_all_is_503(relay_setup, gateway):
    from channels_app.models import ChannelKey

    ChannelKey.objects.update(state="auto_disabled")
    gateway.reload()
    started = time.monotonic()
    response = requests.post(
        f"{gateway.base_url}/chat/completions",
        timeout=5,
        headers={"Authorization": f"Bearer {relay_setup['key']}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_available_key"
    assert time.monotonic() - started < 1.0
    assert relay_setup["emulator"].requests == []


def test_pinned_channel_is_for_operators_only(two_channels, gateway):
    from billing import services
    from billing.models import User

    pinned = f"{two_channels['key']}-{two_channels['b'].pk}"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    refused = requests.post(
        f"{gateway.base_url}/chat/completions", json=body, timeout=5, headers={"Authorization": f"Bearer {pinned}"}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "channel_pin_forbidden"
    User.objects.filter(pk=two_channels["user"].pk).update(role="operator")
    gateway.reload()
    allowed = requests.post(
        f"{gateway.base_url}/chat/completions", json=body, timeout=5, headers={"Authorization": f"Bearer {pinned}"}
    )
    assert allowed.status_code == 200
    assert two_channels["emulator"].last_request["key"] == "sk-channel-b"
    del services


@pytest.mark.service
def test_a_key_disabled_by_one_relay_process_is_skipped_by_another(two_channels, gateway, relay_process):
    from channels_app.models import ChannelKey

    # given: only the invalid key and a good one in A
    ChannelKey.objects.filter(pk=two_channels["keys"]["sk-limited"].pk).update(state="manual_disabled")
    gateway.reload()
    emulator = two_channels["emulator"]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    headers = {"Authorization": f"Bearer {two_channels['key']}"}
    # when: process 1 meets the invalid key (its rotation reaches it within two requests)
    for _ in range(2):
        assert (
            requests.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=5).status_code
            == 200
        )
    assert used_keys(emulator)["sk-invalid"] == 1
    # then: process 2 never sends it a request
    for _ in range(4):
        assert (
            requests.post(
                f"{relay_process.base_url}/chat/completions", json=body, headers=headers, timeout=5
            ).status_code
            == 200
        )
    assert used_keys(emulator)["sk-invalid"] == 1
