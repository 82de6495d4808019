"""Provider adapters, by the wire protocol of a channel type
(relay/channel_types.py): pure functions from the caller's request to the
upstream's, and from the upstream's answer back (relay/providers/base.py).

A channel type whose protocol has no adapter here is never routed: the API
and the admin refuse to create or enable one, and the snapshot skips any
left from before.
"""

from __future__ import annotations

from relay.channel_types import CHANNEL_TYPES
from relay.providers import anthropic, openai
from relay.providers.base import Provider

PROVIDERS: dict[str, Provider] = {"openai": openai.PROVIDER, "anthropic": anthropic.PROVIDER}


def has_adapter(channel_type: str) -> bool:
    kind = CHANNEL_TYPES.get(channel_type)
    return kind is not None and kind.protocol in PROVIDERS


def no_adapter_message(channel_type: str) -> str:
    served = sorted(t for t in CHANNEL_TYPES if has_adapter(t))
    return (
        f'Channel type "{channel_type}" has no provider adapter yet, so it cannot be routed; '
        f"use one of: {', '.join(served)}."
    )
