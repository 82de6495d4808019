"""The Anthropic emulator, checked with the official anthropic SDK straight
against it (no gateway): it refuses what Anthropic refuses and answers in
the shapes the SDK parses."""

from __future__ import annotations

from typing import Any, cast

import anthropic
import pytest
import requests

from tests.emulators.anthropic_api import THINKING_TEXT, AnthropicEmulator, reply_text

GOOD = "sk-ant-upstream-good"
MODEL = "claude-sonnet-4-6"
HI: list[Any] = [{"role": "user", "content": "Say hi"}]


def sdk(emulator: AnthropicEmulator, key: str = GOOD) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emulator.root_url, api_key=key, max_retries=0)


def post(emulator: AnthropicEmulator, body: dict, headers: dict | None = None) -> requests.Response:
    sent = {"x-api-key": GOOD, "anthropic-version": "2023-06-01", **(headers or {})}
    return requests.post(f"{emulator.root_url}/v1/messages", json=body, headers=sent, timeout=5)


def test_create_stream_and_count(anthropic_emulator):
    client = sdk(anthropic_emulator)
    message = client.messages.create(model=MODEL, max_tokens=50, messages=HI)
    assert isinstance(message.content[0], anthropic.types.TextBlock) and message.content[0].text == reply_text()
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 5)
    with client.messages.stream(model=MODEL, max_tokens=50, messages=HI) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.usage.output_tokens == 5 and final.stop_reason == "end_turn"
    assert client.messages.count_tokens(model=MODEL, messages=HI).input_tokens == 5


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            {},
            400,
            "top-level `system`",
        ),
        ({"model": MODEL, "messages": HI}, {}, 400, "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 5, "messages": HI}, {"x-api-key": ""}, 401, "x-api-key header is required"),
        ({"model": MODEL, "max_tokens": 5, "messages": HI}, {"x-api-key": "sk-ant-wrong"}, 401, "invalid x-api-key"),
        ({"model": MODEL, "max_tokens": 5, "messages": HI}, {"anthropic-version": ""}, 400, "anthropic-version"),
        (
            {"model": MODEL, "max_tokens": 5, "messages": HI},
            {"anthropic-version": "2020-01-01"},
            400,
            "invalid version",
        ),
        ({"model": MODEL, "max_tokens": 5, "messages": HI, "n": 2}, {}, 400, "Extra inputs are not permitted"),
        ({"model": "gpt-4o", "max_tokens": 5, "messages": HI}, {}, 404, "model"),
        ({"model": MODEL, "max_tokens": 5, "messages": HI, "temperature": 1.5}, {}, 400, "temperature"),
        (
            {
                "model": MODEL,
                "max_tokens": 1500,
                "messages": HI,
                "thinking": {"type": "enabled", "budget_tokens": 2000},
            },
            {},
            400,
            "budget_tokens",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}
                ],
            },
            {},
            400,
            "tool_use_id",
        ),
    ],
)
def test_what_it_refuses(anthropic_emulator, body, headers, status, words):
    answer = post(anthropic_emulator, body, headers)
    assert answer.status_code == status
    error = answer.json()
    assert error["type"] == "error" and words in error["error"]["message"] and error["request_id"]


@pytest.mark.parametrize(
    ("behaviour", "exception", "kind"),
    [
        ("invalid", anthropic.AuthenticationError, "authentication_error"),
        ("permission", anthropic.PermissionDeniedError, "permission_error"),
        ("billing", anthropic.PaymentRequiredError, "billing_error"),
        ("credit", anthropic.BadRequestError, "invalid_request_error"),
        ("rate_limited", anthropic.RateLimitError, "rate_limit_error"),
        ("server_error", anthropic.InternalServerError, "api_error"),
        ("overloaded", anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_each_error_type(anthropic_emulator, behaviour, exception, kind):
    anthropic_emulator.set_key_behaviour(GOOD, behaviour, retry_after=4)
    with pytest.raises(exception) as failed:
        sdk(anthropic_emulator).messages.create(model=MODEL, max_tokens=5, messages=HI)
    assert cast(dict[str, Any], failed.value.body)["error"]["type"] == kind
    if behaviour == "rate_limited":
        assert failed.value.response.headers["retry-after"] == "4"


def test_thinking_signatures_must_come_back_unchanged(anthropic_emulator):
    client = sdk(anthropic_emulator)
    first = client.messages.create(
        model=MODEL, max_tokens=2000, messages=HI, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    thinking = first.content[0]
    assert isinstance(thinking, anthropic.types.ThinkingBlock) and thinking.thinking == THINKING_TEXT
    history: list[Any] = [
        *HI,
        {"role": "assistant", "content": [thinking.model_dump()]},
        {"role": "user", "content": "go"},
    ]
    assert client.messages.create(model=MODEL, max_tokens=2000, messages=history).content
    history[1]["content"][0]["signature"] = thinking.signature[:-2] + "AA"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=2000, messages=history)


def test_tool_use_streams_input_json_deltas(anthropic_emulator):
    tools: list[Any] = [
        {"name": "f", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
    ]
    with sdk(anthropic_emulator).messages.stream(model=MODEL, max_tokens=100, messages=HI, tools=tools) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert set(deltas) == {"input_json_delta"}
    use = final.content[0]
    assert isinstance(use, anthropic.types.ToolUseBlock) and use.input == {"q": "example"}
    assert final.stop_reason == "tool_use"


def test_prompt_caching_writes_then_reads(anthropic_emulator):
    system: list[Any] = [{"type": "text", "text": "rules " * 50, "cache_control": {"type": "ephemeral"}}]
    client = sdk(anthropic_emulator)
    first = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HI)
    second = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HI)
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (50, 0)
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (0, 50)
    assert first.usage.input_tokens == second.usage.input_tokens == 3 + 2 + 3
