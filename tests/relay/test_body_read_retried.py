"""A non-stream answer whose body breaks off (reset or stall mid-body) is
retried on another key: nothing had reached the client (issue 13, defect 7)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("fault", ["reset_mid_body", "stall_after_headers"])
def test_a_broken_body_is_retried_on_the_next_key(relay_setup, gateway, fault):
    from channels_app.models import Channel
    from channels_app.services import add_keys

    # given: the first key's answers break off mid-body, the second is fine
    emulator = relay_setup["emulator"]
    channel = relay_setup["channel"]
    Channel.objects.filter(pk=channel.pk).update(first_byte_timeout=1.0)
    add_keys(channel, ["sk-upstream-two"])
    emulator.set_key_behaviour("sk-upstream-good", fault, seconds=30)
    emulator.set_key_behaviour("sk-upstream-two", "ok")
    gateway.reload()
    headers = {"Authorization": f"Bearer {relay_setup['key']}"}
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    # when: enough requests that the rotation starts on the broken key
    answers = [
        requests.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=20) for _ in range(4)
    ]
    # then: every one served by the good key
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json()["choices"][0]["message"]["content"] for a in answers)
    assert any(r["key"] == "sk-upstream-good" for r in emulator.requests)
