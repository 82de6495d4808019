"""channels_app.notify: operators hear of disabled and recovered keys, and of
channels and models left with no usable key, once per interval."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from channels_app import crypto, services, tasks
from channels_app.models import Channel, ChannelKey, Notification
from relay.keystate import Transition

pytestmark = pytest.mark.django_db(transaction=True)  # notifications are queued on commit


class WebhookReceiver:
    """A real local HTTP endpoint that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.raw: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.raw.append(raw)
                receiver.bodies.append(json.loads(raw))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/oneproxy"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [b["event"] for b in self.bodies]


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Queued tasks run at once, in this process (the worker tests cover the broker)."""
    from oneproxy.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def webhook(settings, eager_celery) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    settings.ONEPROXY_NOTIFY_WEBHOOK_URL = receiver.url
    settings.ONEPROXY_NOTIFY_EMAILS = []
    settings.ONEPROXY_NOTIFY_INTERVAL_MINUTES = 30
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def make_channel(emulator, secrets: list[str], name: str = "main", models=("gpt-4o-mini",)) -> Channel:
    return services.create_channel(
        name=name, type="openai", base_url=emulator.base_url, models=list(models), keys=secrets
    )


def key_of(channel: Channel, secret: str) -> ChannelKey:
    return next(k for k in channel.keys.all() if k.reveal() == secret)


def transition(key: ChannelKey, state: str, reason: str) -> None:
    """What the relay reports after an upstream answer."""
    services.record_key_transitions([Transition(key.pk, state, reason, f"upstream said {reason}", time.time())])


def test_the_webhook_gets_one_notification_per_transition_with_masked_key_and_reason(openai_emulator, webhook):
    # given a channel with a good key and one the upstream refuses
    revoked = "sk-upstream-revoked-000000011"
    channel = make_channel(openai_emulator, ["sk-upstream-good", revoked])
    # when a probe disables it
    tasks.probe_keys.apply()
    # then exactly one notification, about that key
    assert webhook.events() == ["key_disabled"]
    body = webhook.bodies[0]
    key = key_of(channel, revoked)
    assert body["key"] == {"id": key.pk, "hint": crypto.mask(revoked)}
    assert (body["reason"], body["from_state"], body["to_state"]) == ("invalid_key", "active", "auto_disabled")
    assert body["channel"] == {"id": channel.pk, "name": "main", "type": "openai"}
    assert crypto.mask(revoked) in body["text"] and "invalid_key" in body["text"]
    assert revoked.encode() not in webhook.raw[0]
    # when probes find nothing new
    tasks.probe_keys.apply()
    # then nothing more is sent
    assert webhook.events() == ["key_disabled"]
    # when the upstream accepts the key again and the next probe brings it back
    openai_emulator.valid_keys.add(revoked)
    tasks.probe_keys.apply()
    # then exactly one more
    assert webhook.events() == ["key_disabled", "key_recovered"]
    assert webhook.bodies[1]["key"]["hint"] == crypto.mask(revoked) and webhook.bodies[1]["reason"] == "probe_ok"
    assert all(revoked.encode() not in raw for raw in webhook.raw)


def test_a_flapping_key_is_rate_limited(openai_emulator, webhook):
    # given
    channel = make_channel(openai_emulator, ["sk-upstream-good", "sk-upstream-flapping-00000012"])
    key = key_of(channel, "sk-upstream-flapping-00000012")
    # when the key flaps twice within the interval
    for _ in range(2):
        transition(key, "auto_disabled", "invalid_key")
        transition(key, "active", "probe_ok")
    # then one notification of each kind, the rest held back
    assert webhook.events() == ["key_disabled", "key_recovered"]
    assert sorted(Notification.objects.values_list("kind", "suppressed_count")) == [
        ("key_disabled", 1),
        ("key_recovered", 1),
    ]
    # when the interval has passed
    Notification.objects.update(last_sent_at=timezone.now() - timedelta(minutes=31))
    transition(key, "auto_disabled", "invalid_key")
    # then it is told again, with how many were held back
    assert webhook.events() == ["key_disabled", "key_recovered", "key_disabled"]
    assert webhook.bodies[-1]["suppressed_since_last"] == 1


def test_a_channel_and_a_model_left_without_a_usable_key_are_reported(openai_emulator, webhook):
    # given a channel whose only key is about to fail, serving one model
    # nobody else serves and one another channel also serves
    doomed = "sk-upstream-doomed-000000013"
    channel = make_channel(openai_emulator, [doomed], name="lonely", models=("gpt-4o-mini", "gpt-4o"))
    make_channel(openai_emulator, ["sk-upstream-good"], name="backup", models=("gpt-4o",))
    # when the relay finds the key revoked
    transition(key_of(channel, doomed), "auto_disabled", "invalid_key")
    # then
    assert webhook.events() == ["key_disabled", "channel_exhausted", "model_exhausted"]
    _, lost_channel, lost_model = webhook.bodies
    assert lost_channel["channel"]["id"] == channel.pk and lost_channel["key"]["hint"] == crypto.mask(doomed)
    assert lost_model["model"] == "gpt-4o-mini" and lost_model["reason"] == "invalid_key"


def test_cooling_is_routine_and_not_reported(openai_emulator, webhook):
    # given
    busy = "sk-upstream-busy-000000014"
    openai_emulator.set_key_behaviour(busy, "rate_limited", retry_after=30)
    channel = make_channel(openai_emulator, [busy])
    # when
    tasks.probe_keys.apply()
    # then
    assert key_of(channel, busy).state == "cooling"
    assert webhook.bodies == [] and not Notification.objects.exists()


def test_operators_can_be_told_by_email(openai_emulator, settings, eager_celery):
    # given
    settings.ONEPROXY_NOTIFY_WEBHOOK_URL = None
    settings.ONEPROXY_NOTIFY_EMAILS = ["ops@example.com"]
    revoked = "sk-upstream-revoked-000000015"
    make_channel(openai_emulator, ["sk-upstream-good", revoked])
    # when
    tasks.probe_keys.apply()
    # then
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com"]
    assert crypto.mask(revoked) in message.subject and "invalid_key" in message.subject
    assert crypto.mask(revoked) in message.body and revoked not in message.body + message.subject


def test_nothing_is_queued_when_notifications_are_off(openai_emulator, settings, eager_celery):
    # given
    settings.ONEPROXY_NOTIFY_WEBHOOK_URL = None
    settings.ONEPROXY_NOTIFY_EMAILS = []
    make_channel(openai_emulator, ["sk-upstream-revoked-000000016"])
    # when
    tasks.probe_keys.apply()
    # then
    assert not Notification.objects.exists() and mail.outbox == []


def test_a_failed_delivery_is_recorded_and_logged_without_the_url(openai_emulator, settings, eager_celery, caplog):
    # given a webhook nobody listens on (its URL holds a token)
    settings.ONEPROXY_NOTIFY_WEBHOOK_URL = "http://127.0.0.1:9/hooks/T0KEN-in-the-url"
    settings.ONEPROXY_NOTIFY_EMAILS = []
    make_channel(openai_emulator, ["sk-upstream-good", "sk-upstream-revoked-000000017"])
    # when
    with caplog.at_level(logging.WARNING, logger="oneproxy.notify"):
        tasks.probe_keys.apply()
    # then
    row = Notification.objects.get(kind="key_disabled")
    assert row.last_error == "webhook failed: ConnectionError"
    assert "not delivered" in caplog.text and "T0KEN" not in caplog.text
