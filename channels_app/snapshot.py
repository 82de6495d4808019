"""Routing snapshots for the relay, built from channels and their keys."""

from __future__ import annotations

import logging

from django.conf import settings

from channels_app.models import Channel, ChannelKey, DisablePhrase
from relay.channel_types import CHANNEL_TYPES
from relay.outbound import proxy_for
from relay.providers import has_adapter
from relay.snapshot import ChannelSnap, KeySnap

log = logging.getLogger("oneproxy.channels")


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
        if not has_adapter(channel.type):
            # Left from before adapters were checked: never sent bodies its upstream cannot read.
            log.warning(
                "channel %s (%s) is not routed: type %r has no provider adapter", channel.pk, channel.name, channel.type
            )
            continue
        channels.append(channel_snap(channel, tuple(keys.get(channel.pk, ()))))
    return channels


def channel_snap(channel: Channel, keys: tuple[KeySnap, ...] = ()) -> ChannelSnap:
    """The relay's view of one channel (also what probes build their request from)."""
    kind = CHANNEL_TYPES[channel.type]
    max_tokens = (channel.config or {}).get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        max_tokens = settings.ONEPROXY_DEFAULT_MAX_TOKENS
    return ChannelSnap(
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
        keys=keys,
        max_tokens=max_tokens,
    )


def load_disable_phrases() -> tuple[str, ...]:
    return tuple(p.lower() for p in DisablePhrase.objects.values_list("phrase", flat=True))
