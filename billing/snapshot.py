"""Token, user and price snapshots for the relay."""

from __future__ import annotations

import ipaddress
from decimal import Decimal

from billing.models import ModelPrice, Token, User
from relay.snapshot import PriceSnap, TokenSnap, UserSnap


def load_tokens() -> dict[str, TokenSnap]:
    tokens = {}
    for t in Token.objects.live().only(
        "id",
        "user_id",
        "name",
        "key_hash",
        "status",
        "expires_at",
        "quota",
        "used",
        "models",
        "subnets",
        "rpm_limit",
        "tpm_limit",
        "rpd_limit",
        "concurrency_limit",
    ):
        tokens[t.key_hash] = TokenSnap(
            id=t.pk,
            user_id=t.user_id,
            name=t.name,
            active=t.status == Token.Status.ACTIVE,
            expires_at=t.expires_at.timestamp() if t.expires_at else None,
            quota=t.quota,
            used=t.used,
            models=frozenset(t.models or ()),
            subnets=tuple(ipaddress.ip_network(s, strict=False) for s in t.subnets or ()),
            rpm_limit=t.rpm_limit,
            tpm_limit=t.tpm_limit,
            rpd_limit=t.rpd_limit,
            concurrency_limit=t.concurrency_limit,
        )
    return tokens


def load_users() -> dict[int, UserSnap]:
    users = {}
    for u in User.objects.select_related("group", "team"):
        users[u.pk] = UserSnap(
            id=u.pk,
            active=u.is_active,
            is_operator=u.is_operator,
            group=u.group.name,
            group_multiplier=u.group.multiplier,
            team_id=u.team_id,
            team_multiplier=u.team.multiplier if u.team else Decimal(1),
            balance=u.balance,
        )
    return users


def load_prices() -> dict[tuple[str, str], PriceSnap]:
    return {
        (p.model, p.channel_type): PriceSnap(
            input=p.input,
            output=p.output,
            cached_input=p.input if p.cached_input is None else p.cached_input,
            audio=p.input if p.audio is None else p.audio,
            per_request=p.per_request,
            per_image=p.per_image,
        )
        for p in ModelPrice.objects.all()
    }
