"""Fixtures of the fault and abuse suite: a channel whose first key
misbehaves (tests/emulators/faults.py) beside a healthy one, with short
timeouts so stalls cost a second, not minutes."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def faulty_pool(relay_setup: dict[str, Any]) -> dict[str, Any]:
    from channels_app.models import Channel
    from channels_app.services import add_keys

    channel = relay_setup["channel"]
    Channel.objects.filter(pk=channel.pk).update(connect_timeout=1.0, first_byte_timeout=1.0, idle_timeout=1.0)
    add_keys(channel, ["sk-upstream-faulty"])
    return relay_setup


def books_exact(user_id: int, within: float = 5.0) -> bool:
    """Balance = ledger sum = top-ups − settled usage. Read as three queries
    while the relay may be settling: true once they agree (within a few s)."""
    import time

    from django.db.models import Sum

    from billing.models import LedgerEntry, UsageLog, User

    deadline = time.monotonic() + within
    while True:
        balance = User.objects.get(pk=user_id).balance
        ledger = LedgerEntry.objects.filter(user_id=user_id).aggregate(s=Sum("amount"))["s"] or 0
        usage = UsageLog.objects.filter(user_id=user_id).aggregate(s=Sum("cost"))["s"] or 0
        if balance == ledger == 10_000_000 - usage:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
