"""Usage events as the relay queues them, for the settlement and reconcile tests."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from relay.metering import Usage
from relay.ports import UsageEvent


def usage_event(
    user_id: int,
    cost: int,
    *,
    token_id: int | None = None,
    request_id: str | None = None,
    team_id: int | None = None,
    created_at: float | None = None,
    **fields: Any,
) -> UsageEvent:
    usage = Usage(
        prompt_tokens=fields.pop("prompt_tokens", 100),
        completion_tokens=fields.pop("completion_tokens", 20),
        cached_tokens=fields.pop("cached_tokens", 0),
    )
    values: dict[str, Any] = {
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o",
        "upstream_model": "gpt-4o",
        "channel_id": None,
        "key_id": None,
        "group_multiplier": "1",
        "team_multiplier": "1",
        "attempts": 1,
        "status": 200,
        "latency_ms": 40,
        "stream": False,
        **fields,
    }
    return UsageEvent(
        request_id=request_id or uuid.uuid4().hex,
        created_at=time.time() if created_at is None else created_at,
        user_id=user_id,
        team_id=team_id,
        token_id=token_id,
        usage=usage,
        cost=cost,
        **values,
    )


def settled_row(user: Any, *, at: str | datetime | None = None, cost: int = 0, **fields: Any) -> Any:
    """A usage row written as the relay's are: through settlement (charged,
    rolled up, counted in budgets), for ``user`` in their team of now.
    ``token``, ``channel`` and ``key`` may be given as objects."""
    from billing.models import UsageLog
    from billing.usage_sink import apply_usage

    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    for name in ("token", "channel", "key"):
        if name in fields:
            thing = fields.pop(name)
            fields[f"{name}_id"] = thing.pk if thing is not None else None
    if "model" in fields:
        fields.setdefault("upstream_model", fields["model"])
    event = usage_event(
        user.pk,
        cost,
        team_id=fields.pop("team_id", user.team_id),
        created_at=None if when is None else when.timestamp(),
        **fields,
    )
    apply_usage([event])
    return UsageLog.objects.get(request_id=event.request_id)


def assert_books_exact(user: Any) -> None:
    """balance = ledger sum; every charge = minus the cost of the usage rows
    of its batch and user (an older one: of its row), and every costed row
    has a charge; the user's charges = their usage rows' costs = their hour
    and day rollups, to the µUSD. Call while the user's raw rows exist."""
    from django.db.models import Sum

    from billing.models import LedgerEntry, UsageLog, UsageRollup, User

    user = User.objects.get(pk=user.pk)
    ledger = LedgerEntry.objects.filter(user=user)
    assert user.balance == (ledger.aggregate(s=Sum("amount"))["s"] or 0)
    rows = UsageLog.objects.filter(user=user)
    settled = rows.filter(cost__gt=0, batch__backfill=False)
    by_batch = dict(settled.values("batch").annotate(s=Sum("cost")).values_list("batch", "s"))
    charges = dict(ledger.filter(kind="charge", batch__isnull=False).values_list("batch", "amount"))
    assert {batch: -amount for batch, amount in charges.items()} == by_batch
    # Charges from before settlement batches: one per request, naming its row.
    for amount, cost in ledger.filter(kind="charge", usage__isnull=False).values_list("amount", "usage__cost"):
        assert -amount == cost
    costs = rows.aggregate(s=Sum("cost"))["s"] or 0
    charged = -(ledger.filter(kind="charge").aggregate(s=Sum("amount"))["s"] or 0)
    for span in ("hour", "day"):
        rolled = UsageRollup.objects.filter(user=user, span=span).aggregate(s=Sum("cost"))["s"] or 0
        assert rolled == costs, (span, rolled, costs)
    assert charged == costs
