"""The fault suite: an upstream key that misbehaves in every way the emulator
knows (tests/emulators/faults.py), beside a healthy key. A fault before the
first byte is retried on the healthy key: no request fails while it exists.
A fault after the first byte ends the stream cleanly, billed for what was
delivered. Never a 5xx of ours, never a hold left, the books exact."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.faults.conftest import books_exact
from tests.faults.corpus import AFTER_FIRST_BYTE, BEFORE_FIRST_BYTE, WHOLE_ANSWERS_ONLY
from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _post(gateway: Any, key: str, stream: bool) -> requests.Response:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return requests.post(
        f"{gateway.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20
    )


@pytest.mark.parametrize(("fault", "options"), BEFORE_FIRST_BYTE, ids=[f[0] + str(f[1]) for f in BEFORE_FIRST_BYTE])
def test_a_fault_before_the_first_byte_never_fails_a_request_while_a_key_is_healthy(
    faulty_pool: dict[str, Any], gateway: Any, fault: str, options: dict[str, Any]
) -> None:
    from billing.models import UsageLog

    faulty_pool["emulator"].set_key_behaviour("sk-upstream-faulty", fault, **options)
    streams = (False, False, False, False) if fault in WHOLE_ANSWERS_ONLY else (False, True, False, True)
    answers = [_post(gateway, faulty_pool["key"], stream) for stream in streams]
    assert [a.status_code for a in answers] == [200] * 4, [a.text[:200] for a in answers]
    assert all(b"[DONE]" in a.content for a, stream in zip(answers, streams, strict=True) if stream)
    assert "sk-upstream-faulty" not in "".join(a.text for a in answers)
    wait_for(lambda: UsageLog.objects.count() == 4)
    assert gateway.run(_held(gateway.relay)) == 0
    assert books_exact(faulty_pool["user"].pk)


@pytest.mark.parametrize("fault", AFTER_FIRST_BYTE)
def test_a_fault_after_the_first_byte_ends_the_stream_cleanly_and_bills_it(
    relay_setup: dict[str, Any], gateway: Any, fault: str
) -> None:
    from billing.models import UsageLog
    from channels_app.models import Channel

    Channel.objects.filter(pk=relay_setup["channel"].pk).update(idle_timeout=1.0)
    gateway.reload()
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", fault, seconds=30, size=1 << 20)
    answer = _post(gateway, relay_setup["key"], stream=True)
    assert answer.status_code == 200
    tail = answer.content.rstrip().rsplit(b"\n", 1)[-1]
    assert tail == b"data: [DONE]" or b'"error"' in tail, tail[:200]
    assert b"sk-upstream-good" not in answer.content
    row = wait_for(lambda: UsageLog.objects.first())
    assert row.cost > 0
    assert gateway.run(_held(gateway.relay)) == 0
    assert books_exact(relay_setup["user"].pk)


def test_a_never_ending_stream_stops_when_the_client_leaves(relay_setup: dict[str, Any], gateway: Any) -> None:
    from billing.models import UsageLog

    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", "endless_stream")
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {relay_setup['key']}"}
    with requests.post(
        f"{gateway.base_url}/chat/completions", json=body, headers=headers, stream=True, timeout=10
    ) as r:
        for n, _ in enumerate(r.iter_content(256)):
            if n > 50:
                break
    row = wait_for(lambda: UsageLog.objects.first())
    assert row.error == "client disconnected" and row.cost > 0
    assert gateway.run(_held(gateway.relay)) == 0


async def _held(relay: Any) -> int:
    ledger = relay.ledger
    if hasattr(ledger, "_held"):
        return int(sum(ledger._held.values()))
    return int(await ledger.redis.zcard(relay.redis_names.holds))
