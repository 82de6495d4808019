"""A relay killed with ``kill -9`` mid-stream loses no work: what it had sent
upstream is charged at the hold's estimate, the books stay exact (issue 13,
defect 11). Both modes: the journal (embedded), the hold registry (service)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from django.db.models import Sum

from tests.faults.procs import start_relay
from tests.gateway import wait_for, wait_for_key

pytestmark = pytest.mark.django_db(transaction=True)

BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "max_tokens": 50,
}


def _stream(url: str, key: str) -> None:
    try:
        with requests.post(
            f"{url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}, stream=True, timeout=30
        ) as answer:
            for _ in answer.iter_content(None):
                pass
    except requests.RequestException:
        pass  # the relay died under it


def test_streams_in_flight_at_kill_9_are_charged_at_their_estimate(relay_setup, tmp_path):
    from billing import services
    from billing.models import LedgerEntry, UsageLog, User
    from relay.settlement import LOST_ERROR

    # given: four streams paused mid-way by the emulator
    emulator = relay_setup["emulator"]
    emulator.enable_stream_gate()
    relay = start_relay(tmp_path)
    key = relay_setup["key"]
    wait_for_key(relay.url, key)
    clients = [threading.Thread(target=_stream, args=(relay.url, key), daemon=True) for _ in range(4)]
    for client in clients:
        client.start()
    wait_for(lambda: len([r for r in emulator.requests if r["path"] == "/v1/chat/completions"]) == 4)
    time.sleep(0.3)
    # when: the relay is killed, then the stranded work is settled as beat would
    relay.kill9()
    for client in clients:
        client.join(10)
    services.reconcile(stale_hold_seconds=0)

    def settled() -> bool:  # as beat runs billing.settle_usage, again and again
        services.settle_stranded_usage(min_idle_ms=0)
        return UsageLog.objects.count() >= 4

    wait_for(settled, timeout=15, interval=0.5)
    # then: each request is on the books, charged at its hold's estimate
    rows = list(UsageLog.objects.all())
    assert len(rows) == 4
    assert all(r.error == LOST_ERROR and r.cost == r.held > 0 for r in rows)
    user = User.objects.get(pk=relay_setup["user"].pk)
    ledger = LedgerEntry.objects.filter(user=user).aggregate(s=Sum("amount"))["s"]
    assert user.balance == ledger == 10_000_000 - sum(r.cost for r in rows)
    emulator.disable_stream_gate()
