"""The Anthropic adapter and the Anthropic inbound format, on literals: no
network, no server. Requests, answers, every stream event type, errors."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest

from relay.inbound import anthropic as inbound
from relay.inbound import openai as openai_inbound
from relay.metering import Usage, cost_micro
from relay.providers import anthropic as provider
from relay.providers import openai as openai_provider
from relay.providers.base import ConversionError, Image
from relay.snapshot import ChannelSnap, PriceSnap

CHANNEL = ChannelSnap(
    id=1,
    name="claude",
    type="anthropic",
    protocol="anthropic",
    local=False,
    base_url="https://api.anthropic.com",
    models=frozenset({"claude"}),
    model_mapping={"claude": "claude-sonnet-4-6"},
    groups=frozenset({"default"}),
    priority=0,
    weight=1,
    config={},
    proxy_url=None,
    include_usage=True,
    connect_timeout=5,
    first_byte_timeout=5,
    idle_timeout=5,
    keys=(),
    max_tokens=2048,
)
PNG = "iVBORw0KGgo="


def sse(kind: str, payload: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


def body_of(hub: dict, images: dict | None = None, stream: bool = False) -> dict:
    return provider.messages_body(CHANNEL, hub, "claude", stream, images or {})


# --- OpenAI hub → Anthropic request -------------------------------------------------


def test_system_and_developer_messages_are_lifted_and_max_tokens_always_sent():
    body = body_of(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}}],
                },
                {"role": "user", "content": "hi"},
            ]
        }
    )
    assert body == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 2048,
        "system": [
            {"type": "text", "text": "Be brief."},
            {"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


@pytest.mark.parametrize(("field", "value"), [("max_tokens", 99), ("max_completion_tokens", 77)])
def test_the_clients_cap_wins(field, value):
    assert body_of({"messages": [{"role": "user", "content": "x"}], field: value})["max_tokens"] == value


def test_sampling_stop_user_and_stream():
    body = body_of(
        {"messages": [{"role": "user", "content": "x"}], "temperature": 1.7, "top_p": 0.9, "stop": "END", "user": "u1"},
        stream=True,
    )
    assert body["temperature"] == 1.0  # Anthropic's range is 0 to 1
    assert (body["top_p"], body["stop_sequences"], body["metadata"], body["stream"]) == (
        0.9,
        ["END"],
        {"user_id": "u1"},
        True,
    )
    assert body_of({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]


def test_images_from_data_urls_and_from_fetched_urls():
    url = "https://example.com/cat.png"
    content = [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
    ]
    hub = {"messages": [{"role": "user", "content": content}]}
    assert provider.PROVIDER.remote_images(hub) == [url]
    blocks = body_of(hub, {url: Image("image/jpeg", "AAAA")})["messages"][0]["content"]
    assert blocks[1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
    ]


def test_tools_calls_and_results_with_parallel_calls_merged_into_one_turn():
    hub = {
        "messages": [
            {"role": "user", "content": "weather and time"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
        ],
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "time"}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    body = body_of(hub)
    assert body["tools"] == [
        {"name": "weather", "input_schema": {"type": "object"}, "description": "d"},
        {"name": "time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "time", "input": {}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
        ],
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice, expected):
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert (
        body_of({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice})["tool_choice"]
        == expected
    )


def test_thinking_from_reasoning_effort_stays_under_the_cap_and_drops_sampling():
    hub = {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "high", "temperature": 0.5}
    body = body_of({**hub, "max_tokens": 5000})
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4999} and "temperature" not in body
    assert "thinking" not in body_of({**hub, "max_tokens": 1000})  # below Anthropic's minimum budget
    passed = body_of({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "adaptive"}})
    assert passed["thinking"] == {"type": "adaptive"}


@pytest.mark.parametrize(
    "hub",
    [
        {"messages": [{"role": "user", "content": "x"}], "n": 2},
        {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,eA=="}}],
                }
            ]
        },
        {"messages": [{"role": "system", "content": "only a system prompt"}]},
        {"messages": [{"role": "narrator", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]},
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]},
    ],
)
def test_what_anthropic_cannot_take_is_a_conversion_error(hub):
    with pytest.raises(ConversionError):
        body_of(hub)


def test_native_requests_pass_the_body_through_with_the_clients_headers():
    raw = b'{"model":"other","max_tokens":5,"messages":[]}'
    request = provider.PROVIDER.native_request(
        CHANNEL,
        "sk-ant-x",
        "messages",
        raw,
        orjson.loads(raw),
        "other",
        False,
        "application/json",
        {"anthropic-version": "2023-01-01", "anthropic-beta": "a,b"},
    )
    assert request.body is raw  # not even re-serialised
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "x-api-key": "sk-ant-x",
        "anthropic-version": "2023-01-01",
        "anthropic-beta": "a,b",
        "content-type": "application/json",
    }
    mapped = provider.PROVIDER.native_request(
        CHANNEL,
        "k",
        "messages",
        raw.replace(b"other", b"claude"),
        {"model": "claude", "max_tokens": 5},
        "claude",
        False,
        "application/json",
        {},
    )
    assert (
        orjson.loads(mapped.body)["model"] == "claude-sonnet-4-6"
        and mapped.headers["anthropic-version"] == "2023-06-01"
    )


def test_a_base_url_with_v1_is_not_doubled():
    from dataclasses import replace

    assert provider.upstream_url(replace(CHANNEL, base_url="https://proxy.example/v1"), "messages") == (
        "https://proxy.example/v1/messages"
    )


def test_the_probe_is_a_one_token_message():
    probe = provider.PROVIDER.probe_request(CHANNEL, "sk-ant-x", "claude")
    assert probe.url.endswith("/v1/messages") and probe.headers["x-api-key"] == "sk-ant-x"
    assert orjson.loads(probe.body) == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "hi"}],
    }


# --- Anthropic answer → hub -------------------------------------------------------


ANSWER = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Calling."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 40,
    },
}


def test_a_whole_answer_as_a_chat_completion_with_anthropics_counts():
    hub, usage = provider.PROVIDER.hub_response(orjson.dumps(ANSWER), "claude")
    choice = hub["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and hub["model"] == "claude" and hub["object"] == "chat.completion"
    assert choice["message"]["content"] == "Calling." and choice["message"]["reasoning_content"] == "Hmm."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    ]
    assert usage == Usage(prompt_tokens=80, completion_tokens=20, cached_tokens=40, cache_write_tokens=30)
    assert hub["usage"]["prompt_tokens"] == 80 and hub["usage"]["prompt_tokens_details"]["cached_tokens"] == 40


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reasons(reason, finish):
    hub, _ = provider.PROVIDER.hub_response(orjson.dumps({**ANSWER, "stop_reason": reason}), "claude")
    assert hub["choices"][0]["finish_reason"] == finish


def test_an_answer_that_is_not_a_message_is_refused():
    with pytest.raises(ValueError):
        provider.PROVIDER.hub_response(b'{"type": "error"}', "claude")


STREAM = [
    sse(
        "message_start",
        {
            "message": {
                **ANSWER,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 40},
            }
        },
    ),
    sse("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    sse("ping", {}),
    sse("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}}),
    sse("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
    sse("content_block_stop", {"index": 0}),
    sse("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
    sse("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
    sse("content_block_stop", {"index": 1}),
    sse(
        "content_block_start",
        {"index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}},
    ),
    sse("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
    sse("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city"'}}),
    sse("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": ': "P"}'}}),
    sse("content_block_stop", {"index": 2}),
    sse("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 25}}),
    sse("message_stop", {}),
]


def test_every_stream_event_as_hub_chunks():
    decoder = provider.EventDecoder("claude")
    out = [decoder.feed(event) for event in STREAM]
    deltas = [[c["choices"][0]["delta"] if c["choices"] else None for c in chunks] for chunks in out]
    assert deltas == [
        [{"role": "assistant", "content": ""}],  # message_start
        [],  # thinking block start
        [],  # ping
        [{"reasoning_content": "Hmm."}],
        [],  # signature_delta: nothing an OpenAI client reads
        [],
        [],  # empty text block start
        [{"content": "Hi"}],
        [],
        [
            {
                "tool_calls": [
                    {"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": ""}}
                ]
            }
        ],
        [],  # the empty first partial_json
        [{"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}],
        [{"tool_calls": [{"index": 0, "function": {"arguments": ': "P"}'}}]}],
        [],
        [{}],  # message_delta: the finish reason
        [None],  # message_stop: the usage chunk (no choices)
    ]
    assert out[14][0]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[0][0]["id"] == "msg_01" and all(c["model"] == "claude" for chunks in out for c in chunks)
    assert decoder.done and decoder.error is None
    assert decoder.usage == Usage(prompt_tokens=50, completion_tokens=25, cached_tokens=40)
    assert out[15][0]["usage"]["completion_tokens"] == 25


def test_a_stream_error_event_ends_the_decoding_with_the_upstreams_message():
    decoder = provider.EventDecoder("claude")
    assert decoder.feed(sse("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})) == []
    assert decoder.error == "overloaded_error: Overloaded" and not decoder.done


def test_a_native_stream_passed_through_reads_usage_and_masks_keys():
    watcher = provider.PROVIDER.native_stream(False, "sk-ant-secret-1234567890", ())
    sent = [watcher.take(event) for event in STREAM]
    assert sent == STREAM  # byte for byte
    assert watcher.done and watcher.usage == Usage(prompt_tokens=50, completion_tokens=25, cached_tokens=40)
    assert "Hi" in watcher.delivered_text() and watcher.end() == b""
    failing = provider.PROVIDER.native_stream(False, "sk-ant-secret-1234567890", ())
    error = sse("error", {"error": {"type": "api_error", "message": "key sk-ant-secret-1234567890 broke"}})
    masked = failing.take(error)
    assert masked is not None and b"sk-ant-secret-1234567890" not in masked and failing.done
    tail = failing.error_tail("upstream closed", "req_1")
    assert tail.startswith(b"event: error\n") and b"req_1" in tail


@pytest.mark.parametrize(
    ("status", "body", "fault", "reason"),
    [
        (
            401,
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
            "key",
            "invalid_key",
        ),
        (403, {"type": "error", "error": {"type": "permission_error", "message": "no"}}, "key", "permission_denied"),
        (402, {"type": "error", "error": {"type": "billing_error", "message": "billing"}}, "key", "insufficient_quota"),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "Your credit balance is too low to access the Anthropic API.",
                },
            },
            "key",
            "insufficient_quota",
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "messages.0.content: your credit balance is too low (echoed)",
                },
            },
            "request",
            "upstream_400",
        ),
        (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, "cool", "rate_limited"),
        (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "cool", "overloaded"),
        (500, {"type": "error", "error": {"type": "api_error", "message": "boom"}}, "transient", "upstream_500"),
        (
            404,
            {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}},
            "request",
            "upstream_404",
        ),
    ],
)
def test_errors_to_key_verdicts(status, body, fault, reason):
    verdict = provider.PROVIDER.judge(status, orjson.dumps(body), {"retry-after": "9"}, "", ())
    assert (verdict.fault, verdict.reason) == (fault, reason)
    if fault == "cool":
        assert verdict.retry_after == 9


# --- Anthropic client → hub and back ---------------------------------------------


def test_an_anthropic_request_as_a_hub_request():
    payload = {
        "model": "gpt-4o",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "bad"}],
                    },
                    {"type": "text", "text": "and?"},
                ],
            },
        ],
        "tools": [{"name": "w", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_k": 5,
        "metadata": {"user_id": "u"},
        "stream": True,
    }
    hub = inbound.to_hub(payload)
    assert hub["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": '{"a":1}'}}],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: bad"},
        {"role": "user", "content": "and?"},
    ]
    assert hub["tools"] == [
        {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "description": "d"}}
    ]
    assert (hub["tool_choice"], hub["parallel_tool_calls"], hub["stop"], hub["user"]) == (
        "required",
        False,
        ["END"],
        "u",
    )
    assert hub["max_tokens"] == 100 and hub["stream"] is True and "top_k" not in hub


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": []},
        {"messages": [{"role": "system", "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
        {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web"}]},
    ],
)
def test_what_other_models_cannot_take_is_a_conversion_error(payload):
    with pytest.raises(ConversionError):
        inbound.to_hub(payload)


def test_a_hub_answer_as_an_anthropic_message():
    hub = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "ok",
                    "reasoning_content": "why",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"a": 1}'}}
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 20}},
    }
    message = orjson.loads(inbound.from_hub(hub, "gpt-4o"))
    assert message["type"] == "message" and message["model"] == "gpt-4o" and message["id"].startswith("msg_")
    assert message["content"] == [
        {"type": "thinking", "thinking": "why", "signature": ""},
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "call_1", "name": "w", "input": {"a": 1}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 30,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 20,
    }


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def parse(stream: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in stream.split(b"\n\n"):
        if block:
            name, data = block.split(b"\n")
            out.append((name[7:].decode(), orjson.loads(data[6:])))
    return out


def test_hub_chunks_as_anthropics_full_event_sequence():
    encoder = inbound.EventEncoder("gpt-4o")
    stream = b"".join(
        encoder.encode(c)
        for c in [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "hm"}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "w", "arguments": ""}}
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            chunk({}, "tool_calls"),
            {"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
        ]
    )
    stream += encoder.end(Usage(prompt_tokens=9, completion_tokens=4))
    events = parse(stream)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["model"] == "gpt-4o" and events[0][1]["message"]["content"] == []
    assert [e[1]["content_block"]["type"] for e in events if e[0] == "content_block_start"] == [
        "thinking",
        "text",
        "tool_use",
    ]
    assert [e[1]["index"] for e in events if e[0] == "content_block_start"] == [0, 1, 2]
    assert events[10][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"a"'}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 9,
            "output_tokens": 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_an_empty_or_broken_stream_still_starts_with_message_start():
    assert [n for n, _ in parse(inbound.EventEncoder("m").end(None))] == [
        "message_start",
        "ping",
        "message_delta",
        "message_stop",
    ]
    tail = parse(inbound.EventEncoder("m").error_tail("upstream closed", "req_9"))
    assert [n for n, _ in tail] == ["message_start", "ping", "error"]
    assert tail[-1][1]["error"]["type"] == "api_error" and "req_9" in tail[-1][1]["error"]["message"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (504, "api_error"),
        (529, "overloaded_error"),
        (409, "invalid_request_error"),
    ],
)
def test_errors_in_anthropics_shape(status, kind):
    body = orjson.loads(inbound.INBOUND.error_body(status, "no (request id: r)", "x", None, None))
    assert body == {"type": "error", "error": {"type": kind, "message": "no (request id: r)"}}


# --- the OpenAI side of a conversion ------------------------------------------------


def test_openai_chunks_decode_to_hub_chunks_with_usage_and_the_end():
    decoder = openai_provider.ChunkDecoder()
    assert decoder.feed(b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n')[0]["choices"][0]["delta"] == {
        "content": "x"
    }
    decoder.feed(b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n')
    decoder.feed(b"data: [DONE]\n\n")
    assert decoder.done and decoder.usage == Usage(prompt_tokens=3, completion_tokens=2)
    broken = openai_provider.ChunkDecoder()
    assert broken.feed(b'data: {"error":{"message":"bad key sk-abcdefghijklmnop"}}\n\n') == []
    assert broken.error is not None and "sk-abcdefghijklmnop" not in broken.error


def test_hub_chunks_encode_for_an_openai_client_without_the_unasked_usage_chunk():
    encoder = openai_inbound.ChunkEncoder("claude", client_wants_usage=False)
    assert encoder.encode({"choices": [], "usage": {}}) == b""
    assert orjson.loads(encoder.encode(chunk({"content": "x"}))[6:])["model"] == "claude"
    assert encoder.end(None) == b"data: [DONE]\n\n"
    assert openai_inbound.ChunkEncoder("m", client_wants_usage=True).encode({"choices": [], "usage": {}}) != b""


def test_cache_writes_and_reads_each_at_their_own_price():
    price = PriceSnap(Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3"), cache_write=Decimal("3.75"))
    usage = Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=600, cache_write_tokens=300)
    # 100 plain × 3 + 600 × 0.3 + 300 × 3.75 + 100 × 15 µUSD
    assert cost_micro(usage, price, Decimal(1), Decimal(1)) == 300 + 180 + 1125 + 1500
    unset = PriceSnap(Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3"))
    assert cost_micro(Usage(prompt_tokens=10, cache_write_tokens=10), unset, Decimal(1), Decimal(1)) == 30
