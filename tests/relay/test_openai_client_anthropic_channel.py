"""An OpenAI client in front of an ``anthropic`` channel: the official openai
SDK with strict response validation, through the gateway, against the
Anthropic emulator (tests/emulators/anthropic_api.py)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.emulators.anthropic_api import PNG_B64, THINKING_TEXT, reply_text
from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a timezone.",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string"}, "hours": {"type": "integer", "minimum": 2}},
                "required": ["tz", "hours"],
            },
        },
    },
]


def sdk(gateway, key):
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, _strict_response_validation=True, max_retries=0)


def rows(n: int):
    from billing.models import UsageLog

    wait_for(lambda: UsageLog.objects.count() >= n)
    return list(UsageLog.objects.order_by("id"))


def sent(setup) -> dict:
    return setup["anthropic_emulator"].last_request


def test_plain_chat(anthropic_setup, gateway):
    # when
    reply = sdk(gateway, anthropic_setup["key"]).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi"}]
    )
    # then: Anthropic's answer in OpenAI's shape
    assert reply.choices[0].message.content == reply_text()
    assert reply.choices[0].finish_reason == "stop" and reply.object == "chat.completion" and reply.model == MODEL
    request = sent(anthropic_setup)
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == "sk-ant-upstream-good" and "authorization" not in request["headers"]
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    assert request["json"] == {
        "model": MODEL,
        "max_tokens": 1024,  # the channel's default: Anthropic requires one
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}],
    }
    # Anthropic's counts: 2 words + 3, five words out
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 5)


def test_system_prompt_is_lifted_and_stop_sequences_map(anthropic_setup, gateway):
    # when
    reply = sdk(gateway, anthropic_setup["key"]).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hi"},
        ],
        stop=["Anthropic"],
        max_tokens=50,
        temperature=0.2,
    )
    # then
    body = sent(anthropic_setup)["json"]
    assert body["system"] == [{"type": "text", "text": "You are terse."}]
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["stop_sequences"] == ["Anthropic"] and body["max_tokens"] == 50 and body["temperature"] == 0.2
    assert reply.choices[0].message.content == "Hello from the" and reply.choices[0].finish_reason == "stop"


def test_image_as_data_url_and_as_http_url(anthropic_setup, settings, gateway_with_loopback_images):
    # given
    gateway = gateway_with_loopback_images
    emulator = anthropic_setup["anthropic_emulator"]
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": emulator.image_url}},
    ]
    # when
    reply = sdk(gateway, anthropic_setup["key"]).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}]
    )
    # then: both sent inline (Anthropic takes base64), the URL fetched once by the gateway
    blocks = sent(anthropic_setup)["json"]["messages"][0]["content"]
    images = [b for b in blocks if b["type"] == "image"]
    assert [i["source"] for i in images] == [{"type": "base64", "media_type": "image/png", "data": PNG_B64}] * 2
    assert emulator.image_requests == 1
    assert reply.usage.prompt_tokens == 4 + 2 * 85 + 3


def test_tool_call_round_trip_with_parallel_calls(anthropic_setup, gateway):
    # given
    client = sdk(gateway, anthropic_setup["key"])
    messages = [{"role": "user", "content": "Weather in Paris and the time in Tokyo?"}]
    # when: the model calls both tools at once
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, tool_choice="auto")
    calls = first.choices[0].message.tool_calls
    # then
    assert first.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[1].function.arguments) == {"tz": "example", "hours": 2}
    body = sent(anthropic_setup)["json"]
    assert body["tools"][0] == {
        "name": "get_weather",
        "input_schema": TOOLS[0]["function"]["parameters"],
        "description": "Current weather for a city.",
    }
    assert body["tool_choice"] == {"type": "auto"}
    # when: the results go back (the emulator refuses a tool_result without its tool_use)
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"result of {call.function.name}"})
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    # then: one user turn holds both results, and the model answers in text
    assert second.choices[0].message.content == reply_text()
    turns = sent(anthropic_setup)["json"]["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["type"] for b in turns[1]["content"]] == ["tool_use", "tool_use"]
    assert [(b["type"], b["tool_use_id"]) for b in turns[2]["content"]] == [("tool_result", c.id) for c in calls]


def test_parallel_tool_calls_false_and_a_forced_tool(anthropic_setup, gateway):
    reply = sdk(gateway, anthropic_setup["key"]).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "time?"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )
    assert [c.function.name for c in reply.choices[0].message.tool_calls] == ["get_time"]
    assert sent(anthropic_setup)["json"]["tool_choice"] == {
        "type": "tool",
        "name": "get_time",
        "disable_parallel_tool_use": True,
    }


def test_stream_without_tools(anthropic_setup, gateway):
    # when
    chunks = list(
        sdk(gateway, anthropic_setup["key"]).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi"}], stream=True
        )
    )
    # then: one chunk per text delta, no usage chunk (not asked for), a finish reason
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply_text()
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert sent(anthropic_setup)["json"]["stream"] is True
    (row,) = rows(1)
    assert row.stream and (row.prompt_tokens, row.completion_tokens) == (5, 5) and not row.estimated


def test_stream_with_usage_asked_for(anthropic_setup, gateway):
    chunks = list(
        sdk(gateway, anthropic_setup["key"]).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert "stream_options" not in sent(anthropic_setup)["json"]


def test_stream_with_tools(anthropic_setup, gateway):
    # when
    stream = sdk(gateway, anthropic_setup["key"]).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather and time?"}], tools=TOOLS, stream=True
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    # then: input_json_delta pieces came as argument deltas, assembled into JSON
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "example"}
    assert json.loads(calls[1]["arguments"]) == {"tz": "example", "hours": 2}
    assert all(c["id"].startswith("toolu_") for c in calls.values())


def test_thinking_as_reasoning_content(anthropic_setup, gateway):
    client = sdk(gateway, anthropic_setup["key"])
    messages = [{"role": "user", "content": "Think first"}]
    # when: OpenAI's reasoning_effort asks for a thinking budget
    reply = client.chat.completions.create(model=MODEL, messages=messages, reasoning_effort="low", max_tokens=4000)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, reasoning_effort="low", max_tokens=4000, stream=True
        )
    )
    # then
    assert sent(anthropic_setup)["json"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    message = reply.choices[0].message
    assert message.model_extra["reasoning_content"] == THINKING_TEXT and message.content == reply_text()
    streamed = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
    )
    assert streamed == THINKING_TEXT
    assert reply.usage.completion_tokens == 5 + 5


@pytest.mark.parametrize(
    ("behaviour", "status", "state", "reason"),
    [
        ("invalid", 502, "auto_disabled", "invalid_key"),
        ("permission", 502, "auto_disabled", "permission_denied"),
        ("credit", 502, "auto_disabled", "insufficient_quota"),
        ("billing", 502, "auto_disabled", "insufficient_quota"),
        ("rate_limited", 429, "cooling", "rate_limited"),
        ("overloaded", 429, "cooling", "overloaded"),
        ("server_error", 502, "active", ""),
    ],
)
def test_each_upstream_error_class(anthropic_setup, gateway, behaviour, status, state, reason):
    # given
    from channels_app.models import ChannelKey

    anthropic_setup["anthropic_emulator"].set_key_behaviour("sk-ant-upstream-good", behaviour, retry_after=7)
    # when
    with pytest.raises(openai.APIStatusError) as failed:
        sdk(gateway, anthropic_setup["key"]).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    # then: the client's error, and the key's state by Anthropic's error type
    assert failed.value.status_code == status
    assert "sk-ant-upstream-good" not in failed.value.message
    if behaviour == "rate_limited":  # Anthropic's retry-after, honoured
        assert failed.value.response.headers["retry-after"] == "7"
    key = ChannelKey.objects.get(channel=anthropic_setup["anthropic"])
    wait_for(lambda: ChannelKey.objects.get(pk=key.pk).state == state, timeout=5)
    key.refresh_from_db()
    assert key.state_reason == reason or (state == "active" and not key.state_reason)


def test_a_request_anthropic_refuses_is_the_clients_error_and_changes_no_key(anthropic_setup, gateway):
    # given: an image type Anthropic does not take
    from channels_app.models import ChannelKey

    content = [{"type": "image_url", "image_url": {"url": f"data:image/bmp;base64,{PNG_B64}"}}]
    # when
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gateway, anthropic_setup["key"]).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}]
        )
    # then
    assert "media_type" in refused.value.message
    assert ChannelKey.objects.get(channel=anthropic_setup["anthropic"]).state == "active"


def test_what_cannot_be_said_to_anthropic_is_a_400_before_sending(anthropic_setup, gateway):
    client = sdk(gateway, anthropic_setup["key"])
    emulator = anthropic_setup["anthropic_emulator"]
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2)
    with pytest.raises(openai.BadRequestError) as embeddings:
        client.embeddings.create(model=MODEL, input="hi")
    assert many.value.code == "unsupported_content" and "one choice" in many.value.message
    assert embeddings.value.code == "unsupported_endpoint"
    assert emulator.requests == []


def test_billing_uses_anthropics_counts_cache_writes_and_reads(anthropic_setup, gateway):
    # given: a long system prompt marked as a cache breakpoint (LiteLLM's convention in OpenAI parts)
    from billing.models import UsageLog, User

    system = [{"type": "text", "text": "policy " * 200, "cache_control": {"type": "ephemeral"}}]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]
    client = sdk(gateway, anthropic_setup["key"])
    before = User.objects.get(pk=anthropic_setup["user"].pk).balance
    # when: the same prompt twice
    first = client.chat.completions.create(model=MODEL, messages=messages)
    second = client.chat.completions.create(model=MODEL, messages=messages)
    # then: the first writes the cache, the second reads it, each billed at its own price
    assert sent(anthropic_setup)["json"]["system"][0]["cache_control"] == {"type": "ephemeral"}
    written, read = rows(2)
    # 200 words cached; 3 (the system turn) + 1 + 3 (the user turn) not; 5 words out
    assert (written.prompt_tokens, written.cache_write_tokens, written.cached_tokens) == (207, 200, 0)
    assert (read.prompt_tokens, read.cache_write_tokens, read.cached_tokens) == (207, 0, 200)
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == 207
    assert second.usage.prompt_tokens_details.cached_tokens == 200
    # $ per 1M tokens is µUSD per token: input 3, cache write 3.75, cache read 0.3, output 15
    assert written.cost == 7 * 3 + 750 + 5 * 15
    assert read.cost == 7 * 3 + 60 + 5 * 15
    wait_for(lambda: User.objects.get(pk=anthropic_setup["user"].pk).balance == before - written.cost - read.cost)
    assert UsageLog.objects.filter(estimated=True).count() == 0


def test_probes_use_the_anthropic_adapter(anthropic_setup):
    # given
    from channels_app.probe import probe_keys

    emulator = anthropic_setup["anthropic_emulator"]
    # when
    (result,) = probe_keys(channel_ids=[anthropic_setup["anthropic"].pk])
    # then: Anthropic's request shape and headers, not /chat/completions with a Bearer
    assert result.ok
    probe = emulator.last_request
    assert probe["path"] == "/v1/messages" and probe["headers"]["x-api-key"] == "sk-ant-upstream-good"
    assert probe["json"]["max_tokens"] == 1
