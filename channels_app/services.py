"""Writes to channels and keys: one function per operator verb."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from channels_app.models import Channel, ChannelKey, ConfigVersion


def bump_config_version() -> None:
    """Tell every relay process to reload its snapshots (they poll this row)."""
    updated = ConfigVersion.objects.filter(pk=1).update(version=F("version") + 1, updated_at=timezone.now())
    if not updated:
        ConfigVersion.objects.get_or_create(pk=1, defaults={"version": 1})


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
def create_channel(*, keys: Iterable[str] = (), **fields) -> Channel:  # type: ignore[no-untyped-def]
    channel = Channel.objects.create(**fields)
    add_keys(channel, keys)
    return channel


def set_key_state(key: ChannelKey, state: str, reason: str = "") -> ChannelKey:
    key.state = state
    key.state_reason = reason[:255]
    key.state_changed_at = timezone.now()
    if state != ChannelKey.State.COOLING:
        key.cooldown_until = None
    key.save(update_fields=["state", "state_reason", "state_changed_at", "cooldown_until"])
    return key


def delete_channel(channel: Channel) -> None:
    """A channel with usage is disabled and hidden, so history keeps pointing at it."""
    if channel.usage.exists():
        channel.status = Channel.Status.DISABLED
        channel.deleted_at = timezone.now()
        channel.save(update_fields=["status", "deleted_at", "updated_at"])
    else:
        channel.delete()


def delete_key(key: ChannelKey) -> None:
    if key.usage.exists():
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
