"""Telling operators when the key pool needs them.

A key auto-disabled or back in service, and a channel or a model left with no
usable key, become a JSON webhook (ONEPROXY_NOTIFY_WEBHOOK_URL) and/or an
email (ONEPROXY_NOTIFY_EMAILS). Keys appear only as their masked hint.

At most one notification per subject (key, channel, model) and kind per
ONEPROXY_NOTIFY_INTERVAL_MINUTES, so a flapping key does not flood anyone;
the ``Notification`` row per subject and kind is the lock, so relay
processes and workers agree.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from channels_app.models import Channel, ChannelKey, Notification
from channels_app.signals import key_transitioned
from relay.errors import mask_secrets

log = logging.getLogger("oneproxy.notify")

Kind = Notification.Kind
NOTIFY_TASK = "channels_app.notify"
WEBHOOK_TIMEOUT = 10.0


def enabled() -> bool:
    return bool(settings.ONEPROXY_NOTIFY_WEBHOOK_URL or settings.ONEPROXY_NOTIFY_EMAILS)


def kind_of(from_state: str, to_state: str) -> str | None:
    """Which key transitions operators hear about (cooling alone is routine)."""
    if to_state == ChannelKey.State.AUTO_DISABLED and from_state != to_state:
        return Kind.KEY_DISABLED
    if to_state == ChannelKey.State.ACTIVE and from_state in (
        ChannelKey.State.AUTO_DISABLED,
        ChannelKey.State.COOLING,
    ):
        return Kind.KEY_RECOVERED
    return None


@receiver(key_transitioned)
def on_key_transitioned(*, key_id: int, from_state: str, transition: Any, **kwargs: Any) -> None:
    """``signals.key_transitioned`` receiver: queue ``channels_app.notify``
    once the transition is committed. Cheap when notifications are off or
    the transition is routine (the relay calls this on its own thread)."""
    kind = kind_of(from_state, transition.state)
    if kind is None or not enabled():
        return
    event = {
        "kind": str(kind),
        "key_id": key_id,
        "from_state": from_state,
        "to_state": transition.state,
        "reason": transition.reason,
        "message": transition.message[:1000],
        "source": transition.source,
        "at": transition.changed_at,
    }
    transaction.on_commit(functools.partial(_enqueue, event))


def _enqueue(event: dict) -> None:
    # By the task's stable name: the task module calls into this one.
    try:
        current_app.tasks[NOTIFY_TASK].delay(event)
    except Exception:  # a broker outage must not fail the caller's write
        log.exception("could not queue a notification: channel key %s %s", event["key_id"], event["kind"])


@dataclass
class Notice:
    kind: str
    subject: str
    subject_line: str
    text: str
    body: dict = field(default_factory=dict)


def send(event: dict) -> int:
    """Build and deliver the notifications one key transition calls for
    (the ``channels_app.notify`` task); returns how many went out."""
    key = ChannelKey.objects.select_related("channel").filter(pk=event["key_id"]).first()
    if key is None:
        return 0
    notices = [_key_notice(key, event)]
    if event["kind"] == Kind.KEY_DISABLED:
        notices += _exhaustion_notices(key, notices[0])
    sent = 0
    now = timezone.now()
    for notice in notices:
        claimed, suppressed = _claim(notice.kind, notice.subject, now)
        if not claimed:
            log.info("notification held back (rate limit): %s %s", notice.kind, notice.subject)
            continue
        notice.body["suppressed_since_last"] = suppressed
        _deliver(notice)
        sent += 1
    return sent


def _masked(text: str, key: ChannelKey) -> str:
    try:
        secret = key.reveal()
    except Exception:  # noqa: BLE001 - an unreadable key still gets its notice
        secret = ""
    if secret:
        text = text.replace(secret, key.hint)
    return mask_secrets(text)


def _channel_info(channel: Channel) -> dict:
    return {"id": channel.pk, "name": channel.name, "type": channel.type}


def _key_notice(key: ChannelKey, event: dict) -> Notice:
    channel = key.channel
    message = _masked(event.get("message") or "", key)
    verb = "auto-disabled" if event["kind"] == Kind.KEY_DISABLED else "back in service"
    text = f'Key {key.hint} (#{key.pk}) of channel "{channel.name}" (#{channel.pk}) is {verb}: {event["reason"]}'
    if message:
        text += f" — {message}"
    at = datetime.fromtimestamp(event["at"], UTC) if event.get("at") else timezone.now()
    return Notice(
        kind=event["kind"],
        subject=f"key:{key.pk}",
        subject_line=f"[oneproxy] key {key.hint} {verb} ({event['reason']})",
        text=text,
        body={
            "event": event["kind"],
            "text": text,
            "key": {"id": key.pk, "hint": key.hint},
            "channel": _channel_info(channel),
            "from_state": event["from_state"],
            "to_state": event["to_state"],
            "reason": event["reason"],
            "message": message,
            "source": event.get("source", ""),
            "at": at.isoformat(),
        },
    )


def _exhaustion_notices(key: ChannelKey, cause: Notice) -> list[Notice]:
    """A channel, or a model it lists, that this key's loss left with no usable key."""
    channel = key.channel
    if channel.deleted_at is not None or channel.status != Channel.Status.ENABLED:
        return []  # not serving anyway: nothing was lost now
    notices = []
    because = {"key": cause.body["key"], "reason": cause.body["reason"]}
    if not channel.keys.usable().exists():
        text = (
            f'Channel "{channel.name}" (#{channel.pk}) has no usable key left '
            f"(last: {key.hint}, {cause.body['reason']})."
        )
        notices.append(
            Notice(
                kind=Kind.CHANNEL_EXHAUSTED,
                subject=f"channel:{channel.pk}",
                subject_line=f'[oneproxy] channel "{channel.name}" has no usable key',
                text=text,
                body={"event": Kind.CHANNEL_EXHAUSTED, "text": text, "channel": _channel_info(channel), **because},
            )
        )
    serving = Channel.objects.live().filter(
        status=Channel.Status.ENABLED, pk__in=ChannelKey.objects.usable().values("channel_id")
    )
    served = {model for models in serving.values_list("models", flat=True) for model in models or ()}
    for model in sorted(set(channel.models or ()) - served):
        text = (
            f'Model "{model}" has no channel with a usable key left (last: channel "{channel.name}", key {key.hint}).'
        )
        notices.append(
            Notice(
                kind=Kind.MODEL_EXHAUSTED,
                subject=f"model:{model}"[:200],
                subject_line=f'[oneproxy] model "{model}" has no usable key',
                text=text,
                body={
                    "event": Kind.MODEL_EXHAUSTED,
                    "text": text,
                    "model": model,
                    "channel": _channel_info(channel),
                    **because,
                },
            )
        )
    return notices


def _claim(kind: str, subject: str, now: datetime) -> tuple[bool, int]:
    """Take the right to notify about this subject now; (claimed, how many
    were held back since the last one). One conditional UPDATE or one INSERT
    on a unique row: two processes never both win."""
    interval = timedelta(minutes=settings.ONEPROXY_NOTIFY_INTERVAL_MINUTES)
    rows = Notification.objects.filter(kind=kind, subject=subject)
    suppressed = rows.values_list("suppressed_count", flat=True).first()
    if suppressed is not None:
        won = rows.filter(last_sent_at__lte=now - interval).update(
            last_sent_at=now, sent_count=F("sent_count") + 1, suppressed_count=0, last_error=""
        )
        if won:
            return True, suppressed
    else:
        try:
            with transaction.atomic():
                Notification.objects.create(kind=kind, subject=subject, last_sent_at=now, sent_count=1)
            return True, 0
        except IntegrityError:
            pass  # another process claimed it first
    rows.update(suppressed_count=F("suppressed_count") + 1)
    return False, 0


def _deliver(notice: Notice) -> None:
    errors = []
    url = settings.ONEPROXY_NOTIFY_WEBHOOK_URL
    if url:
        try:
            response = requests.post(url, json=notice.body, timeout=WEBHOOK_TIMEOUT)
            if response.status_code >= 400:
                errors.append(f"webhook answered HTTP {response.status_code}")
        except requests.RequestException as exc:
            # Not str(exc): it names the URL, and webhook URLs often hold a token.
            errors.append(f"webhook failed: {type(exc).__name__}")
    recipients = settings.ONEPROXY_NOTIFY_EMAILS
    if recipients:
        try:
            send_mail(notice.subject_line, notice.text, None, list(recipients))
        except Exception as exc:  # noqa: BLE001 - SMTP and backends raise many kinds
            errors.append(f"email failed: {type(exc).__name__}")
    error = "; ".join(errors)
    if error:
        log.warning("notification %s %s not delivered: %s", notice.kind, notice.subject, error)
    Notification.objects.filter(kind=notice.kind, subject=notice.subject).update(
        last_text=notice.text[:4000], last_error=error
    )
