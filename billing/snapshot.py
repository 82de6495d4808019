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
            budget=u.budget,
            budget_period=u.budget_period,
            team_budget=u.team.budget if u.team else None,
            team_budget_period=u.team.budget_period if u.team else "month",
        )
    return users


def load_budget_spent(users: dict[int, UserSnap], now: float) -> tuple[dict[tuple[str, int], int], float]:
    """Spending in the current period of every user and team with a budget,
    and the earliest end of those periods (when the relay must reload)."""
    from relay.periods import period_bounds

    subjects: dict[tuple[str, int], str] = {}
    for u in users.values():
        if u.budget is not None:
            subjects[("user", u.id)] = u.budget_period
        if u.team_id is not None and u.team_budget is not None:
            subjects[("team", u.team_id)] = u.team_budget_period
    spent: dict[tuple[str, int], int] = {}
    next_end = float("inf")
    for (kind, subject_id), period in subjects.items():
        next_end = min(next_end, period_bounds(period, now)[1])
        spent[(kind, subject_id)] = spent_in_current_period(kind, subject_id, period, now)
    return spent, next_end


def spent_in_current_period(kind: str, subject_id: int, period: str, now: float) -> int:
    from datetime import UTC, datetime

    from django.db.models import Sum

    from billing.models import UsageLog
    from relay.periods import period_bounds

    start, _ = period_bounds(period, now)
    rows = UsageLog.objects.filter(created_at__gte=datetime.fromtimestamp(start, UTC))
    rows = rows.filter(user_id=subject_id) if kind == "user" else rows.filter(user__team_id=subject_id)
    return rows.aggregate(total=Sum("cost"))["total"] or 0


def load_prices() -> dict[tuple[str, str], PriceSnap]:
    return {
        (p.model, p.channel_type): PriceSnap(
            input=p.input,
            output=p.output,
            cached_input=p.input if p.cached_input is None else p.cached_input,
            audio=p.input if p.audio is None else p.audio,
            per_request=p.per_request,
            per_image=p.per_image,
            per_second=p.per_second,
        )
        for p in ModelPrice.objects.all()
    }
