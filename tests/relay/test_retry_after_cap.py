"""An upstream's Retry-After cools a key for at most the configured cap, and
its own value is recorded (issue 13, defect 10)."""

from __future__ import annotations

import time

import pytest
import requests

from relay import keystate
from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("header", "hinted"),
    [("999999999", 999999999.0), ("30", 30.0), ("-5", 0.0), ("abc", None), ("Wed, 21 Oct 2099 07:28:00 GMT", None)],
)
def test_cooldown_is_capped_whatever_the_header(header, hinted):
    parsed = keystate.retry_after({"retry-after": header})
    if hinted is not None:
        assert parsed == hinted
    assert 0 <= keystate.cooldown(parsed, 1, cap=300) <= 300


def test_a_429_with_a_huge_retry_after_cools_the_key_for_minutes_not_decades(relay_setup, gateway):
    from channels_app.models import ChannelKey

    # given: the key answers 429 with Retry-After: 999999999
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", "rate_limited", retry_after="999999999")
    headers = {"Authorization": f"Bearer {relay_setup['key']}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    # when
    answer = requests.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=10)
    # then: the client hears a short wait; the key cools for the cap (300 s), the upstream's value recorded
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) <= 300
    key = wait_for(lambda: ChannelKey.objects.filter(state="cooling").first())
    assert key.cooldown_until.timestamp() - time.time() <= 301
    assert "Retry-After 999999999 s" in key.last_error
