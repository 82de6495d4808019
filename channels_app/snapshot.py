"""Routing snapshots for the relay, built from channels and their keys."""

from __future__ import annotations

from channels_app.models import Channel, ChannelKey, DisablePhrase
from relay.channel_types import CHANNEL_TYPES
from relay.outbound import proxy_for
from relay.snapshot import ChannelSnap, KeySnap


def load_channels() -> list[ChannelSnap]:
    """Enabled, live channels with their usable keys (secrets decrypted here,
    once per reload, never on the request path)."""
    keys: dict[int, list[KeySnap]] = {}
    for key in ChannelKey.objects.usable().filter(channel__status=Channel.Status.ENABLED):
        keys.setdefault(key.channel_id, []).append(
            KeySnap(
                id=key.pk,
                channel_id=key.channel_id,
                secret=key.reveal(),
                state=key.state,
                cooldown_until=key.cooldown_until.timestamp() if key.cooldown_until else None,
                state_changed_at=key.state_changed_at.timestamp() if key.state_changed_at else 0.0,
                rpm_limit=key.rpm_limit,
                tpm_limit=key.tpm_limit,
            )
        )
    channels = []
    for channel in Channel.objects.live().filter(status=Channel.Status.ENABLED):
        kind = CHANNEL_TYPES[channel.type]
        channels.append(
            ChannelSnap(
                id=channel.pk,
                name=channel.name,
                type=channel.type,
                protocol=kind.protocol,
                local=kind.local,
                base_url=channel.effective_base_url,
                models=frozenset(channel.models),
                model_mapping=dict(channel.model_mapping),
                groups=frozenset(channel.groups or ["default"]),
                priority=channel.priority,
                weight=max(channel.weight, 1),
                config=dict(channel.config),
                proxy_url=proxy_for(channel.effective_base_url, channel.proxy_url),
                include_usage=channel.include_usage,
                connect_timeout=channel.connect_timeout,
                first_byte_timeout=channel.first_byte_timeout,
                idle_timeout=channel.idle_timeout,
                keys=tuple(keys.get(channel.pk, ())),
            )
        )
    return channels


def load_disable_phrases() -> tuple[str, ...]:
    return tuple(p.lower() for p in DisablePhrase.objects.values_list("phrase", flat=True))
