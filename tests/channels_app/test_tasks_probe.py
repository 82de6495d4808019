"""channels_app.probe_keys: the real task against the local OpenAI emulator."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app import services, tasks
from channels_app.models import Channel, ChannelKey, KeyEvent

pytestmark = pytest.mark.django_db


def make_channel(emulator, secrets: list[str], **fields) -> Channel:
    fields.setdefault("name", "probed")
    return services.create_channel(
        type="openai", base_url=emulator.base_url, models=["gpt-4o-mini"], keys=secrets, **fields
    )


def key_of(channel: Channel, secret: str) -> ChannelKey:
    return next(k for k in channel.keys.all() if k.reveal() == secret)


def probed_secrets(emulator) -> list[str]:
    return [r["key"] for r in emulator.requests if r["path"] == "/v1/chat/completions"]


def test_an_invalid_key_is_disabled_by_a_probe_with_its_reason(openai_emulator):
    # given
    revoked = "sk-upstream-revoked-000000001"
    channel = make_channel(openai_emulator, ["sk-upstream-good", revoked])
    # when
    summary = tasks.probe_keys.apply().get()
    # then
    assert summary == {"probed": 2, "failed": 1}
    bad, good = key_of(channel, revoked), key_of(channel, "sk-upstream-good")
    assert (bad.state, bad.state_reason) == ("auto_disabled", "invalid_key")
    assert "Incorrect API key provided" in bad.last_error and revoked not in bad.last_error
    event = KeyEvent.objects.get(key=bad)
    assert (event.from_state, event.to_state, event.reason, event.source) == (
        "active",
        "auto_disabled",
        "invalid_key",
        "probe",
    )
    assert good.state == "active" and good.last_success_at is not None and good.latency_ms is not None
    assert good.last_probed_at is not None and bad.last_probed_at is not None
    chat = [r["json"] for r in openai_emulator.requests if r["path"] == "/v1/chat/completions"]
    assert all(body["model"] == "gpt-4o-mini" and body["max_tokens"] == 1 for body in chat)


def test_a_key_that_comes_back_is_active_after_the_next_due_probe(openai_emulator):
    # given a key the upstream refused, so a probe disabled it
    flaky = "sk-upstream-flaky-000000002"
    channel = make_channel(openai_emulator, [flaky], recovery_probe_interval=300)
    tasks.probe_keys.apply()
    key = key_of(channel, flaky)
    assert key.state == "auto_disabled"
    # when the upstream accepts it again, but the recovery interval has not passed
    openai_emulator.valid_keys.add(flaky)
    tasks.probe_keys.apply(kwargs={"due_only": True})
    # then it is left alone for now
    key.refresh_from_db()
    assert key.state == "auto_disabled" and len(probed_secrets(openai_emulator)) == 1
    # when the recovery interval has passed
    ChannelKey.objects.filter(pk=key.pk).update(last_probed_at=timezone.now() - timedelta(seconds=301))
    tasks.probe_keys.apply(kwargs={"due_only": True})
    # then
    key.refresh_from_db()
    assert (key.state, key.state_reason) == ("active", "probe_ok")
    latest = KeyEvent.objects.filter(key=key).first()
    assert (latest.from_state, latest.to_state, latest.source) == ("auto_disabled", "active", "probe")


def test_a_manually_disabled_key_is_never_touched(openai_emulator):
    # given a parked key the upstream would refuse (a probe would disable it)
    parked = "sk-upstream-parked-000000003"
    channel = make_channel(openai_emulator, ["sk-upstream-good", parked])
    key = services.set_key_state(key_of(channel, parked), "manual_disabled", "parked by ops")
    before = ChannelKey.objects.filter(pk=key.pk).values().get()
    # when every way of probing runs
    tasks.probe_keys.apply()
    tasks.probe_keys.apply(kwargs={"due_only": True})
    tasks.probe_keys.apply(kwargs={"channel_id": channel.pk})
    # then it was never sent upstream and its row is exactly as it was
    assert parked not in probed_secrets(openai_emulator)
    assert "sk-upstream-good" in probed_secrets(openai_emulator)
    assert ChannelKey.objects.filter(pk=key.pk).values().get() == before


def test_due_only_probes_exactly_the_keys_whose_interval_has_passed(openai_emulator):
    # given keys in every situation, all valid upstream
    now = timezone.now()
    names = ["fresh", "stale", "used", "disabled-due", "disabled-recent", "cooling", "parked-channel", "fast"]
    secrets = {name: f"sk-due-{name}-00000000" for name in names}
    openai_emulator.valid_keys.update(secrets.values())
    main = make_channel(openai_emulator, [secrets[n] for n in names[:6]])
    off = make_channel(openai_emulator, [secrets["parked-channel"]], name="off", status="disabled")
    quick = make_channel(openai_emulator, [secrets["fast"]], name="quick", probe_interval=60)

    def set_key(channel: Channel, name: str, **fields) -> None:
        ChannelKey.objects.filter(pk=key_of(channel, secrets[name]).pk).update(**fields)

    set_key(main, "fresh", last_probed_at=now - timedelta(seconds=10))
    set_key(main, "stale", last_probed_at=now - timedelta(minutes=31))
    set_key(main, "used", last_success_at=now - timedelta(minutes=1))  # real traffic proved it
    set_key(main, "disabled-due", state="auto_disabled", last_probed_at=now - timedelta(minutes=6))
    set_key(main, "disabled-recent", state="auto_disabled", last_probed_at=now - timedelta(minutes=1))
    set_key(main, "cooling", state="cooling", cooldown_until=now + timedelta(minutes=5))
    set_key(quick, "fast", last_probed_at=now - timedelta(minutes=2))
    assert off.keys.get().last_probed_at is None
    # when
    tasks.probe_keys.apply(kwargs={"due_only": True})
    # then
    wanted = {secrets["stale"], secrets["disabled-due"], secrets["fast"]}
    assert sorted(probed_secrets(openai_emulator)) == sorted(wanted)
    assert key_of(main, secrets["disabled-due"]).state == "active"
    # when beat fires again at once: the run claimed its keys, nothing is due
    tasks.probe_keys.apply(kwargs={"due_only": True})
    # then
    assert len(probed_secrets(openai_emulator)) == 3


def test_a_slow_upstream_does_not_hold_up_the_other_probes(openai_emulator, settings):
    # given two probes at a time and a 3 s probe timeout: the 10 s key holds
    # one slot until it times out, the six others share the other slot
    settings.ONEPROXY_PROBE_CONCURRENCY = 2
    settings.ONEPROXY_PROBE_TIMEOUT = 3
    slow, revoked = "sk-upstream-slow-000000005", "sk-upstream-revoked-000000006"
    fast = [f"sk-upstream-fast-{i:09d}" for i in range(5)]
    openai_emulator.set_key_behaviour(slow, "slow", delay=10)
    openai_emulator.valid_keys.update(fast)
    channel = make_channel(openai_emulator, [slow, *fast, revoked])
    # when
    started_at, started = timezone.now(), time.monotonic()
    summary = tasks.probe_keys.apply().get()
    elapsed = time.monotonic() - started
    # then the run is bounded by the probe timeout, not by the slow upstream
    assert summary == {"probed": 7, "failed": 2}
    assert 2.5 <= elapsed < 6, elapsed
    # and every other key was probed and recorded within the first moments
    for secret in fast:
        key = key_of(channel, secret)
        assert key.latency_ms is not None and key.latency_ms < 1000
        assert key.last_success_at - started_at < timedelta(seconds=1.5)
    bad = key_of(channel, revoked)
    assert bad.state == "auto_disabled" and bad.state_changed_at - started_at < timedelta(seconds=1.5)
    # while the slow one timed out: transient, so it stays active
    slow_key = key_of(channel, slow)
    assert slow_key.state == "active" and slow_key.last_error == "no answer within 3s"
    assert slow_key.last_probed_at - started_at >= timedelta(seconds=2.5)


def test_probe_failures_are_logged_with_channel_and_key_never_the_secret(openai_emulator, caplog):
    # given
    revoked = "sk-upstream-revoked-000000007"
    channel = make_channel(openai_emulator, [revoked])
    key = channel.keys.get()
    # when
    with caplog.at_level(logging.WARNING, logger="oneproxy.probes"):
        tasks.probe_keys.apply(kwargs={"channel_id": channel.pk})
    # then
    assert f"channel {channel.pk} key {key.pk}" in caplog.text
    assert revoked not in caplog.text


def test_operators_probe_a_channel_now_from_the_admin(openai_emulator, client, operator):
    # given
    revoked = "sk-upstream-revoked-000000008"
    channel = make_channel(openai_emulator, ["sk-upstream-good", revoked])
    client.force_login(operator[0])
    # when
    response = client.post(
        "/admin/channels_app/channel/", {"action": "test_now", "_selected_action": [channel.pk]}, follow=True
    )
    # then
    assert "Probed 2 key(s): 1 answered, 1 failed." in response.content.decode()
    assert key_of(channel, revoked).state == "auto_disabled"
