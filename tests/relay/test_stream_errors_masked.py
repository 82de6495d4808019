"""An upstream's stream error event that quotes the provider key reaches the
client with the key masked, as every other error does (issue 13, defect 6)."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stream_error_event_quoting_the_key_is_masked(relay_setup, gateway):
    # given: the upstream streams a chunk, then an error event naming its key
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", "quote_key")
    headers = {"Authorization": f"Bearer {relay_setup['key']}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    # when
    answer = requests.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=10)
    # then: the error reaches the client, the key does not
    assert answer.status_code == 200
    assert "Upstream failure for key" in answer.text
    assert "sk-upstream-good" not in answer.text
    assert "upstream-good" not in answer.text


def test_a_non_stream_error_quoting_the_key_is_masked(relay_setup, gateway):
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", "quote_key", status=400)
    headers = {"Authorization": f"Bearer {relay_setup['key']}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    answer = requests.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=10)
    assert answer.status_code == 400
    assert "upstream-good" not in answer.text
