"""Who may send a request, for which model, to which channels: all from the
in-process snapshot, no I/O."""

from __future__ import annotations

import time

from relay import relay_keys
from relay.errors import RelayError, forbidden, model_not_found, unauthorized
from relay.http import Scope, client_ip, header
from relay.i18n import N_
from relay.snapshot import ChannelSnap, Network, PriceSnap, Snapshot, TokenSnap, UserSnap

Tiers = tuple[tuple[ChannelSnap, ...], ...]


def presented_key(scope: Scope) -> str:
    """The relay key of a request: ``Authorization: Bearer`` (OpenAI SDKs,
    Claude Code's ANTHROPIC_AUTH_TOKEN), else ``x-api-key`` (Anthropic SDKs)."""
    raw = header(scope, b"authorization")
    if raw is not None:
        scheme, _, key = raw.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            return key.strip()
    return (header(scope, b"x-api-key") or b"").decode("latin-1").strip()


def authenticate(
    snapshot: Snapshot, scope: Scope, trusted: tuple[Network, ...]
) -> tuple[TokenSnap, UserSnap, int | None]:
    key = presented_key(scope)
    if not key:
        raise unauthorized(N_("You didn't provide an API key. Send 'Authorization: Bearer sk-…'."))
    key, pinned = relay_keys.split_pinned(key)
    token = snapshot.tokens.get(relay_keys.hash_key(key))
    user = snapshot.users.get(token.user_id) if token else None
    if token is None or user is None:
        raise unauthorized(N_("Incorrect API key provided."))
    if not token.active or not user.active:
        raise unauthorized(N_("This API key is disabled."))
    if token.expires_at is not None and token.expires_at <= time.time():
        raise unauthorized(N_("This API key has expired."))
    if pinned is not None and not user.is_operator:
        raise forbidden(N_("Only operators may pin a channel (sk-KEY-CHANNELID)."), code="channel_pin_forbidden")
    if token.subnets:
        ip = client_ip(scope, trusted)
        if ip is None or not any(ip.version == net.version and ip in net for net in token.subnets):
            raise forbidden(
                N_("Requests from {ip} are not allowed for this API key."), code="ip_not_allowed", params={"ip": ip}
            )
    return token, user, pinned


def check_model(token: TokenSnap, model: str) -> None:
    if token.models and model not in token.models:
        raise forbidden(
            N_("This API key may not use the model '{model}'."), code="model_not_allowed", params={"model": model}
        )


def route(snapshot: Snapshot, user: UserSnap, model: str, pinned: int | None) -> Tiers:
    if pinned is not None:
        channel = snapshot.channels.get(pinned)
        if channel is None:
            raise RelayError(
                404,
                N_("Channel {channel} does not exist or is disabled."),
                code="channel_not_found",
                params={"channel": pinned},
            )
        return ((channel,),)
    tiers = snapshot.routes.get((user.group, model))
    if not tiers:
        raise model_not_found(model)
    return tiers


def price(snapshot: Snapshot, model: str, channel: ChannelSnap) -> PriceSnap:
    found = snapshot.price_for(model, channel)
    if found is None:
        raise forbidden(
            N_("The model '{model}' has no price set; ask an operator."),
            code="model_not_priced",
            params={"model": model},
        )
    return found
