"""The official anthropic SDK pointed at the gateway (``/v1/messages``), in
front of an ``anthropic`` channel (passed through natively) and of an
``openai`` channel (converted through the hub shape and back)."""

from __future__ import annotations

from typing import Any, cast

import anthropic
import pytest

from tests.emulators.anthropic_api import reply_text as claude_reply
from tests.emulators.openai_api import reply_text as openai_reply
from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
# channel kind → (model, the reply's text, the emulator fixture's key in the setup)
KINDS = {
    "anthropic": ("claude-sonnet-4-6", claude_reply(), "anthropic_emulator"),
    "openai": ("gpt-4o-mini", openai_reply(), "emulator"),
}


@pytest.fixture(params=sorted(KINDS))
def kind(request):
    return request.param


def client(gateway, key, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, **kw)


def text_of(message: anthropic.types.Message) -> str:
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock), block
    return block.text


def rows(n: int):
    from billing.models import UsageLog

    wait_for(lambda: UsageLog.objects.count() >= n)
    return list(UsageLog.objects.order_by("id"))


def test_messages_create(anthropic_setup, gateway, kind):
    # given
    model, text, _ = KINDS[kind]
    # when
    message = client(gateway, anthropic_setup["key"]).messages.create(
        model=model,
        max_tokens=256,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hi"}],
    )
    # then
    assert isinstance(message, anthropic.types.Message)
    assert text_of(message) == text
    assert message.stop_reason == "end_turn" and message.model == model and message.role == "assistant"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 5
    (row,) = rows(1)
    assert row.endpoint == "messages" and row.completion_tokens == 5 and row.cost > 0 and not row.estimated


def test_messages_stream_get_final_message(anthropic_setup, gateway, kind):
    # given
    model, text, _ = KINDS[kind]
    # when
    with client(gateway, anthropic_setup["key"]).messages.stream(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Say hi"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    # then: the full event sequence, message_start first, usage in message_delta
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_start" in events and "message_delta" in events
    assert text_of(final) == text and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    (row,) = rows(1)
    assert row.stream and row.completion_tokens == 5 and not row.estimated


def test_tool_call_round_trip(anthropic_setup, gateway, kind):
    # given
    model, _, emulator_name = KINDS[kind]
    sdk = client(gateway, anthropic_setup["key"])
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    # when: the model asks for the tool
    first = sdk.messages.create(model=model, max_tokens=256, messages=messages, tools=TOOLS)
    uses = [b for b in first.content if isinstance(b, anthropic.types.ToolUseBlock)]
    assert first.stop_reason == "tool_use" and uses and uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict)
    # when: the result goes back
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18°C, sunny"}]},
    ]
    second = sdk.messages.create(model=model, max_tokens=256, messages=messages, tools=TOOLS)
    # then
    assert second.stop_reason == "end_turn" and text_of(second)
    sent = anthropic_setup[emulator_name].last_request["json"]
    if kind == "openai":  # tool_result became a tool message naming the call
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": uses[0].id, "content": "18°C, sunny"}
        assert sent["tools"][0]["function"]["name"] == "get_weather"
    else:  # passed through as sent
        assert sent["messages"][-1]["content"][0]["tool_use_id"] == uses[0].id


def test_count_tokens(anthropic_setup, gateway, kind):
    # given
    model, _, emulator_name = KINDS[kind]
    emulator = anthropic_setup[emulator_name]
    # when
    counted = client(gateway, anthropic_setup["key"]).messages.count_tokens(
        model=model, system="Be brief.", messages=[{"role": "user", "content": "How many tokens is this?"}]
    )
    # then: Anthropic's own count on an Anthropic channel; the local tokenizer's otherwise (free, nothing sent)
    if kind == "anthropic":
        assert counted.input_tokens == 5 + 3 + 2 + 3
        assert emulator.last_request["path"] == "/v1/messages/count_tokens"
        (row,) = rows(1)
        assert row.cost == 0 and row.endpoint == "messages/count_tokens"
    else:
        assert 5 <= counted.input_tokens <= 40
        assert emulator.requests == []


def test_errors_are_the_sdks_own_exceptions(anthropic_setup, gateway, kind):
    # given
    model, _, emulator_name = KINDS[kind]
    sdk = client(gateway, anthropic_setup["key"])
    # when / then: our own refusals, in Anthropic's shape
    with pytest.raises(anthropic.AuthenticationError) as unknown:
        client(gateway, "sk-" + "x" * 48).messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    body = cast(dict[str, Any], unknown.value.body)
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError) as missing:
        # (the SDK's messages.create will not send a request without max_tokens: its generic post does)
        sdk.post("/v1/messages", body={"model": model, "messages": [{"role": "user", "content": "hi"}]}, cast_to=object)
    assert "max_tokens" in missing.value.message
    # and an upstream's rate limit, on either kind of channel
    emulator = anthropic_setup[emulator_name]
    key = "sk-ant-upstream-good" if kind == "anthropic" else "sk-upstream-good"
    emulator.set_key_behaviour(key, "rate_limited", retry_after=3)
    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert cast(dict[str, Any], limited.value.body)["error"]["type"] == "rate_limit_error"
    assert limited.value.response.headers["retry-after"] == "3"


def test_an_anthropic_upstreams_request_error_is_relayed_as_bad_request(anthropic_setup, gateway):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(gateway, anthropic_setup["key"]).messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"temperature": 1.5},
        )
    assert "temperature" in refused.value.message


def test_a_stream_that_fails_mid_way_ends_with_an_error_event(anthropic_setup, gateway):
    # given
    anthropic_setup["anthropic_emulator"].set_key_behaviour("sk-ant-upstream-good", "stream_error", chunks=2)
    # when
    with pytest.raises(anthropic.APIStatusError) as failed:
        with client(gateway, anthropic_setup["key"]).messages.stream(
            model="claude-sonnet-4-6", max_tokens=256, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            list(stream)
    # then: the upstream's own error event reached the client; what was delivered is billed
    assert "Overloaded" in str(failed.value)
    (row,) = rows(1)
    assert row.completion_tokens > 0


def test_a_system_role_inside_messages_is_refused_by_anthropic_not_rewritten(anthropic_setup, gateway):
    # The emulator refuses it as Anthropic does; the gateway passes the native request through as sent.
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(gateway, anthropic_setup["key"]).messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "system", "content": "x"}]
        )
    assert "top-level `system`" in refused.value.message
