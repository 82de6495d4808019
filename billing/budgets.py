"""Budget periods and what was spent in them; read by the admin, /api/me/ and the relay's snapshots.

Periods are in UTC (docs/ARCHITECTURE.md, "Money"): a day starts at 00:00, an ISO week
on Monday 00:00, a calendar month on the 1st at 00:00. Spending is a counter
per subject and period (``BudgetSpend``), moved at settlement in the same
transaction as the charge (billing/rollups.py); a budget "resets" simply
because a new period starts with a new counter, so nothing is zeroed.

A team's spending is what was charged to the team: requests its members
made while they were members. A member who leaves takes nothing of it with
them; one who joins brings nothing in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from billing.models import BudgetSpend, Team, User
from relay.periods import period_bounds


def period_start(period: str, now: datetime) -> datetime:
    """The start (inclusive, UTC) of the ``period`` containing ``now``.

    Pure: depends on its arguments only. ``now`` must be timezone-aware; it
    may be in any zone. The rules are the relay's own (relay/periods.py), so
    what the admin and /api/me/ show is what the relay enforces.
    """
    return _bounds(period, now)[0]


def period_end(period: str, now: datetime) -> datetime:
    """The end (exclusive, UTC) of the ``period`` containing ``now``: when the budget resets."""
    return _bounds(period, now)[1]


def _bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    start, end = period_bounds(period, now.timestamp())
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


def spent_in_period(subject: User | Team, now: datetime) -> int:
    """µUSD charged to a user (or to a team: while its members were members)
    in the subject's budget period containing ``now``: its counter."""
    kind = BudgetSpend.Subject.USER if isinstance(subject, User) else BudgetSpend.Subject.TEAM
    return spent(kind, subject.pk, subject.budget_period, period_start(subject.budget_period, now))


def spent(kind: str, subject_id: int, period: str, start: datetime) -> int:
    """The counter of one subject and period (0 if nothing was charged)."""
    value = (
        BudgetSpend.objects.filter(subject=kind, subject_id=subject_id, period=period, start=start)
        .values_list("spent", flat=True)
        .first()
    )
    return value or 0


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: int | None  # µUSD per period; None: no budget
    period: str
    spent: int
    resets_at: datetime

    @property
    def remaining(self) -> int | None:
        """What is left this period, never below zero (the last request of a
        period may cost more than was left); None without a budget."""
        return None if self.budget is None else max(0, self.budget - self.spent)


def budget_status(subject: User | Team, now: datetime) -> BudgetStatus:
    return BudgetStatus(
        budget=subject.budget,
        period=subject.budget_period,
        spent=spent_in_period(subject, now),
        resets_at=period_end(subject.budget_period, now),
    )
