"""Every client mistake gets its documented status and OpenAI-shaped body."""

from __future__ import annotations

import time
from datetime import timedelta

import openai
import pytest
import requests
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)


def post(gateway, key, body, **kw):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **kw.pop("headers", {})}
    return requests.post(f"{gateway.base_url}/chat/completions", data=body, headers=headers, timeout=10, **kw)


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert response.headers["X-Request-Id"] in error["message"]
    if code:
        assert error["code"] == code
    return error


def test_malformed_json_missing_model_unknown_model(relay_setup, gateway):
    key = relay_setup["key"]
    assert_error(post(gateway, key, b"{not json"), 400, "invalid_json")
    assert_error(post(gateway, key, b'{"messages": []}'), 400, "missing_model")
    assert_error(post(gateway, key, b'{"model": "nope", "messages": []}'), 404, "model_not_found")
    assert relay_setup["emulator"].requests == []


def test_unknown_disabled_and_expired_keys(relay_setup, gateway):
    from billing.models import Token

    body = b'{"model": "gpt-4o-mini", "messages": []}'
    assert_error(post(gateway, "sk-" + "x" * 48, body), 401)
    assert_error(requests.post(f"{gateway.base_url}/chat/completions", data=body, timeout=10), 401)
    token = relay_setup["token"]
    Token.objects.filter(pk=token.pk).update(status="disabled")
    gateway.reload()
    assert_error(post(gateway, relay_setup["key"], body), 401)
    Token.objects.filter(pk=token.pk).update(status="active", expires_at=timezone.now() - timedelta(seconds=1))
    gateway.reload()
    assert_error(post(gateway, relay_setup["key"], body), 401)


def test_model_outside_token_list_and_ip_outside_subnets(relay_setup, gateway):
    from billing.models import Token

    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a"}]}'
    Token.objects.filter(pk=relay_setup["token"].pk).update(models=["gpt-4o"])
    gateway.reload()
    assert_error(post(gateway, relay_setup["key"], body), 403, "model_not_allowed")
    Token.objects.filter(pk=relay_setup["token"].pk).update(models=[], subnets=["10.0.0.0/8"])
    gateway.reload()
    assert_error(post(gateway, relay_setup["key"], body), 403, "ip_not_allowed")
    Token.objects.filter(pk=relay_setup["token"].pk).update(subnets=["127.0.0.0/8"])
    gateway.reload()
    assert post(gateway, relay_setup["key"], body).status_code == 200


def test_oversized_body_is_refused_and_server_keeps_serving(relay_setup, gateway, settings):
    limit = gateway.relay.config.max_body_bytes
    assert_error(post(gateway, relay_setup["key"], b"x" * (limit + 1)), 413)
    ok = post(gateway, relay_setup["key"], b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a"}]}')
    assert ok.status_code == 200


def test_insufficient_balance_is_refused_before_any_upstream_call(relay_setup, gateway):
    from billing import services

    poor, _ = services.create_user(username="poor")
    _, key = services.create_token(user=poor, name="p")
    gateway.reload()
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 402
    assert raised.value.body["code"] == "insufficient_quota"
    assert relay_setup["emulator"].requests == []


def test_stream_dying_mid_way_ends_with_error_event_and_is_billed(relay_setup, gateway):
    from billing.models import UsageLog
    from channels_app.models import ChannelKey
    from tests.gateway import wait_for

    ChannelKey.objects.filter(channel=relay_setup["channel"]).delete()
    from channels_app.services import add_keys

    add_keys(relay_setup["channel"], ["sk-dying"])
    relay_setup["emulator"].set_key_behaviour("sk-dying", "die_mid_stream", chunks_before_death=2)
    gateway.reload()
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=relay_setup["key"], max_retries=0)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            received.append(chunk)
    assert received  # the delivered part reached the client
    row = wait_for(lambda: UsageLog.objects.first())
    assert row.completion_tokens > 0 and row.cost > 0 and row.error
    assert len(relay_setup["emulator"].requests) == 1  # never retried after streaming began


def test_client_disconnect_cancels_the_upstream_stream_and_bills_what_was_sent(relay_setup, gateway):
    from billing.models import UsageLog
    from tests.gateway import wait_for

    # given: the upstream pauses after chunk 0 until released (never, here)
    emulator = relay_setup["emulator"]
    emulator.enable_stream_gate()
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    # when: the client reads the first content chunk and hangs up
    with requests.post(
        f"{gateway.base_url}/chat/completions",
        json=body,
        stream=True,
        timeout=10,
        headers={"Authorization": f"Bearer {relay_setup['key']}"},
    ) as response:
        for line in response.iter_lines():
            if b'"content":"Hello"' in line:
                break
    # then: the relay stops, logs and bills the delivered part without waiting for the upstream
    row = wait_for(lambda: UsageLog.objects.first(), timeout=5)
    assert row.error == "client disconnected" and row.stream
    assert row.completion_tokens >= 1 and row.cost > 0


@pytest.mark.parametrize("stream", [False, True])
def test_first_byte_timeout_is_a_504_and_the_server_keeps_serving(relay_setup, gateway, stream):
    from channels_app.models import Channel

    # given: an upstream slower than the channel's first-byte timeout
    Channel.objects.filter(pk=relay_setup["channel"].pk).update(first_byte_timeout=0.5, idle_timeout=0.5)
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", "slow", delay=3)
    gateway.reload()
    body = {"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "x"}]}
    # when
    started = time.monotonic()
    response = requests.post(
        f"{gateway.base_url}/chat/completions",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {relay_setup['key']}"},
    )
    # then: the documented timeout error, within the deadline (one retry on the same single key is not possible)
    assert_error(response, 504, "upstream_timeout")
    assert time.monotonic() - started < 2.5
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", "ok")
    assert (
        post(
            gateway, relay_setup["key"], b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a"}]}'
        ).status_code
        == 200
    )
