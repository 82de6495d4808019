"""A 4xx the request caused never changes a key's state, whatever its text
(issue 13, defect 1): one member's request must not disable a model's keys."""

from __future__ import annotations

import pytest
import requests

from relay import keystate

pytestmark = pytest.mark.django_db(transaction=True)


def _body(message: str, *, type: str = "invalid_request_error", code: str | None = None) -> bytes:
    import orjson

    return orjson.dumps({"error": {"message": message, "type": type, "param": None, "code": code}})


GEMINI_BAD_KEY = (
    b'{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT", '
    b'"details": [{"reason": "API_KEY_INVALID"}]}}'
)
DASHSCOPE_ARREARS = (
    b'{"code": "Arrearage", "message": "Access denied, please make sure your account is in good standing."}'
)
QUOTA = {"type": "insufficient_quota", "code": "insufficient_quota"}


@pytest.mark.parametrize(
    ("status", "body", "phrases", "fault"),
    [
        # The client's own field name echoed back: "billing" is a disable phrase.
        (400, _body("Unrecognized request argument supplied: billing"), (), "request"),
        (400, _body("Invalid value for 'user': insufficient quota of words"), (), "request"),
        (400, _body("Unrecognized request argument supplied: deactivated"), ("deactivated",), "request"),
        (404, _body("The model `invalid api key` does not exist"), (), "request"),
        (422, _body("payment required field missing"), (), "request"),
        # Errors about the key, by status or by code/type.
        (401, _body("Incorrect API key provided", code="invalid_api_key"), (), "key"),
        (403, _body("Your account is not allowed here"), (), "key"),
        (402, _body("Payment required"), (), "key"),
        (429, _body("You exceeded your current quota", **QUOTA), (), "key"),
        (400, GEMINI_BAD_KEY, (), "key"),
        (400, DASHSCOPE_ARREARS, (), "key"),
        # Operator phrases apply to errors about the key: the reason, not the verdict, for 401/403/429.
        (429, _body("Rate limit reached; account frozen by admin"), ("frozen by admin",), "key"),
        (429, _body("Rate limit reached for requests"), (), "cool"),
        (500, _body("billing subsystem hiccup", type="server_error"), (), "transient"),
    ],
)
def test_judge_separates_the_requests_fault_from_the_keys(status, body, phrases, fault):
    assert keystate.judge(status, body, {}, "sk-secret", phrases).fault == fault


@pytest.fixture
def three_keys(relay_setup):
    from channels_app.models import DisablePhrase
    from channels_app.services import add_keys

    emulator = relay_setup["emulator"]
    add_keys(relay_setup["channel"], ["sk-upstream-two", "sk-upstream-three"])
    DisablePhrase.objects.create(phrase="unrecognized request argument")
    for key in ("sk-upstream-good", "sk-upstream-two", "sk-upstream-three"):
        emulator.set_key_behaviour(key, "quote_field", field="billing")
    return relay_setup


def test_a_request_that_echoes_a_disable_phrase_changes_no_key(three_keys, gateway):
    from channels_app.models import ChannelKey, KeyEvent

    # given: every key answers OpenAI's 400 for an unknown field, naming it
    emulator = three_keys["emulator"]
    headers = {"Authorization": f"Bearer {three_keys['key']}"}
    hostile = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "billing": 1}
    # when: one member sends the field, many times
    answers = [
        requests.post(f"{gateway.base_url}/chat/completions", json=hostile, headers=headers, timeout=10)
        for _ in range(5)
    ]
    # then: the client gets the upstream's 400, no retry on another key, every key stays active
    assert {a.status_code for a in answers} == {400}
    assert "Unrecognized request argument supplied: billing" in answers[0].json()["error"]["message"]
    assert len(emulator.requests) == 5
    assert set(ChannelKey.objects.values_list("state", flat=True)) == {"active"}
    assert not KeyEvent.objects.exists()
    # and the model still works for everyone
    fine = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert requests.post(f"{gateway.base_url}/chat/completions", json=fine, headers=headers, timeout=10).ok
