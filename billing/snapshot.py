"""Token, user and price snapshots for the relay."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from decimal import Decimal

from billing import budgets
from billing.models import BudgetSpend, ModelPrice, Token, User
from relay.periods import period_bounds
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
    """Spending in the current period of every user and team with a budget
    (their counters: billing/budgets.py), and the earliest end of those
    periods (when the relay must reload)."""
    wanted: dict[tuple[str, str], set[int]] = {}  # (subject, period) → ids
    for u in users.values():
        if u.budget is not None:
            wanted.setdefault(("user", u.budget_period), set()).add(u.id)
        if u.team_id is not None and u.team_budget is not None:
            wanted.setdefault(("team", u.team_budget_period), set()).add(u.team_id)
    spent: dict[tuple[str, int], int] = {}
    next_end = float("inf")
    for (kind, period), ids in wanted.items():
        start, end = period_bounds(period, now)
        next_end = min(next_end, end)
        for subject_id in ids:
            spent[(kind, subject_id)] = 0
        chosen = sorted(ids)
        current = BudgetSpend.objects.filter(subject=kind, period=period, start=datetime.fromtimestamp(start, UTC))
        for i in range(0, len(chosen), 500):
            counters = current.filter(subject_id__in=chosen[i : i + 500])
            for subject_id, value in counters.values_list("subject_id", "spent"):
                spent[(kind, subject_id)] = value
    return spent, next_end


def spent_in_current_period(kind: str, subject_id: int, period: str, now: float) -> int:
    """One subject's counter for its current period (seeds the relay's Redis allowance)."""
    start, _ = period_bounds(period, now)
    return budgets.spent(kind, subject_id, period, datetime.fromtimestamp(start, UTC))


def load_prices() -> dict[tuple[str, str], PriceSnap]:
    return {
        (p.model, p.channel_type): PriceSnap(
            input=p.input,
            output=p.output,
            cached_input=p.input if p.cached_input is None else p.cached_input,
            audio=p.input if p.audio is None else p.audio,
            cache_write=p.input if p.cache_write is None else p.cache_write,
            per_request=p.per_request,
            per_image=p.per_image,
            per_second=p.per_second,
        )
        for p in ModelPrice.objects.all()
    }
