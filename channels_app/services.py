"""Writes to channels and keys: one function per operator verb."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from channels_app import balances
from channels_app.models import Channel, ChannelKey
from core.services import bump_config_version


def clean_key_lines(keys: Iterable[str]) -> list[str]:
    """Keys as pasted: one per line, blanks and surrounding spaces dropped, duplicates once."""
    seen: dict[str, None] = {}
    for line in keys:
        for part in str(line).splitlines():
            part = part.strip()
            if part:
                seen[part] = None
    return list(seen)


@transaction.atomic
def add_keys(channel: Channel, secrets: Iterable[str]) -> list[ChannelKey]:
    """Add keys to a channel's pool; a key already in the pool is skipped."""
    existing = set(channel.keys.live().values_list("fingerprint", flat=True))
    created = []
    for secret in clean_key_lines(secrets):
        key = ChannelKey(channel=channel)
        key.set_secret(secret)
        if key.fingerprint in existing:
            continue
        existing.add(key.fingerprint)
        key.save()
        created.append(key)
    return created


@transaction.atomic
def create_channel(*, keys: Iterable[str] = (), **fields) -> Channel:
    channel = Channel.objects.create(**fields)
    add_keys(channel, keys)
    return channel


def set_key_state(key: ChannelKey, state: str, reason: str = "") -> ChannelKey:
    """An operator's decision; recorded as an event like any other transition."""
    from channels_app.models import KeyEvent

    if key.state != state:
        KeyEvent.objects.create(
            key=key,
            from_state=key.state,
            to_state=state,
            reason="operator",
            message=reason[:2000],
            source="operator",
            created_at=timezone.now(),
        )
    key.state = state
    key.state_reason = reason[:255]
    key.state_changed_at = timezone.now()
    if state != ChannelKey.State.COOLING:
        key.cooldown_until = None
    key.save(update_fields=["state", "state_reason", "state_changed_at", "cooldown_until"])
    return key


def delete_channel(channel: Channel) -> None:
    """A channel with usage is disabled and hidden, so history keeps pointing
    at it (its rollups outlive the raw usage rows retention prunes)."""
    if channel.rollups.exists() or channel.usage.exists():
        channel.status = Channel.Status.DISABLED
        channel.deleted_at = timezone.now()
        channel.save(update_fields=["status", "deleted_at", "updated_at"])
    else:
        channel.delete()


def delete_key(key: ChannelKey) -> None:
    if key.rollups.exists() or key.usage.exists():
        key.state = ChannelKey.State.MANUAL_DISABLED
        key.deleted_at = timezone.now()
        key.save(update_fields=["state", "deleted_at"])
    else:
        key.delete()


@transaction.atomic
def set_channel_status(channel_ids: Iterable[int], status: str) -> int:
    """Enable or disable many channels at once; returns how many changed."""
    changed = (
        Channel.objects.filter(pk__in=list(channel_ids))
        .exclude(status=status)
        .update(status=status, updated_at=timezone.now())
    )
    # update() sends no post_save, so tell the relay here.
    if changed:
        transaction.on_commit(bump_config_version)
    return changed


def record_key_transitions(transitions: list) -> None:
    """Persist states decided by the relay or a probe (relay/keystate.Transition).

    A manually disabled key is never touched, and a transition older than the
    key's current state loses (another process or an operator was later).
    Written with ``update()``: the relay processes already know (overlay and
    pub/sub), so no config reload is triggered.
    """
    from datetime import UTC, datetime

    from channels_app.models import KeyEvent

    for t in transitions:
        changed_at = datetime.fromtimestamp(t.changed_at, UTC)
        key = ChannelKey.objects.filter(pk=t.key_id).only("state", "state_changed_at").first()
        if key is None or key.state == ChannelKey.State.MANUAL_DISABLED:
            continue
        if key.state_changed_at is not None and key.state_changed_at > changed_at:
            continue
        fields = {
            "state": t.state,
            "state_reason": t.reason[:255],
            "state_changed_at": changed_at,
            "cooldown_until": datetime.fromtimestamp(t.cooldown_until, UTC) if t.cooldown_until else None,
        }
        if t.state != ChannelKey.State.ACTIVE:
            fields.update(last_error=t.message[:2000], last_error_at=changed_at)
        updated = (
            ChannelKey.objects.filter(pk=t.key_id).exclude(state=ChannelKey.State.MANUAL_DISABLED).update(**fields)
        )
        if not updated:
            continue  # an operator disabled it meanwhile: theirs is the last word
        if key.state != t.state or t.state == ChannelKey.State.COOLING:
            KeyEvent.objects.create(
                key_id=t.key_id,
                from_state=key.state,
                to_state=t.state,
                reason=t.reason[:64],
                message=t.message[:2000],
                source=t.source,
                created_at=changed_at,
            )
            from channels_app import signals

            signals.key_transitioned.send(sender=ChannelKey, key_id=t.key_id, from_state=key.state, transition=t)


def record_key_stats(stats: dict[int, tuple[float, float | None, int | None]]) -> None:
    """Last used / last success / latency per key, written in one batch."""
    from datetime import UTC, datetime

    for key_id, (last_used, last_success, latency) in stats.items():
        fields: dict = {"last_used_at": datetime.fromtimestamp(last_used, UTC)}
        if last_success is not None:
            fields["last_success_at"] = datetime.fromtimestamp(last_success, UTC)
        if latency is not None:
            fields["latency_ms"] = latency
        ChannelKey.objects.filter(pk=key_id).update(**fields)


def record_probe_results(results: list) -> None:
    """Latency and outcome of each probe on its key (a key an operator
    disabled meanwhile is left as they left it)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    for r in results:
        fields: dict = {"latency_ms": r.latency_ms, "last_probed_at": now}
        if r.ok:
            fields["last_success_at"] = now
        else:
            fields.update(last_error=r.error[:2000], last_error_at=now)
        ChannelKey.objects.filter(pk=r.key_id).exclude(state=ChannelKey.State.MANUAL_DISABLED).update(**fields)


def refresh_balances(*, channel_id: int | None = None) -> list:
    """Fetch the provider balance of every live key whose channel type
    reports one, store it, and apply the channel's ``min_balance``: a key
    below it is auto-disabled ("low_balance"), one back above it is active
    again. Returns the readings."""
    keys = ChannelKey.objects.live().filter(channel__deleted_at__isnull=True)
    if channel_id is not None:
        keys = keys.filter(channel_id=channel_id)
    keys = keys.exclude(state=ChannelKey.State.MANUAL_DISABLED).select_related("channel")
    readings = balances.fetch_balances(balances.targets(keys))
    record_balances(readings)
    return readings


def record_balances(readings: list) -> None:
    """Store balances (balances.Reading) and disable or re-enable keys by them."""
    import time
    from decimal import Decimal

    from relay.keystate import Transition

    now = timezone.now()
    transitions = []
    for reading in readings:
        if reading.balance is None:
            continue
        ChannelKey.objects.filter(pk=reading.key_id).update(
            balance=reading.balance, balance_currency=reading.currency, balance_updated_at=now
        )
        key = ChannelKey.objects.select_related("channel").filter(pk=reading.key_id).first()
        if key is None:
            continue
        floor: Decimal | None = key.channel.min_balance
        low = floor is not None and reading.balance < floor
        if low and key.state in (ChannelKey.State.ACTIVE, ChannelKey.State.COOLING):
            message = f"balance {reading.balance} {reading.currency} is below the channel's minimum {floor}"
            transitions.append(
                Transition(key.pk, ChannelKey.State.AUTO_DISABLED, "low_balance", message, time.time(), None, "balance")
            )
        elif not low and key.state == ChannelKey.State.AUTO_DISABLED and key.state_reason == "low_balance":
            message = f"balance {reading.balance} {reading.currency} is back at or above the minimum"
            transitions.append(
                Transition(key.pk, ChannelKey.State.ACTIVE, "balance_ok", message, time.time(), None, "balance")
            )
    if transitions:
        record_key_transitions(transitions)
        bump_config_version()  # relay processes reload the keys
