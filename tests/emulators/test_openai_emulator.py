"""Checks the OpenAI emulator against the official ``openai`` SDK.

Clients use ``_strict_response_validation=True`` so that every answer is
validated against the SDK's pydantic types instead of being built leniently;
``max_retries=0`` so that error behaviours surface at once (the SDK would
otherwise honour ``Retry-After`` and retry).  No Django, no database.
"""

from __future__ import annotations

import base64
import http.client
import json
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .fixtures import openai_emulator, openai_emulator_server  # noqa: F401  (standalone use)
from .openai_api import OpenAIEmulator, reply_text

GOOD_KEY = "sk-upstream-good"
TIMEOUT = 10.0
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello to me"},
]
MESSAGES_TOKENS = (2 + 3) + (4 + 3)  # words + 3 per message


@pytest.fixture
def emu(openai_emulator: OpenAIEmulator) -> OpenAIEmulator:  # noqa: F811
    return openai_emulator


def client(emu: OpenAIEmulator, key: str = GOOD_KEY, **kw: Any) -> openai.OpenAI:
    kw.setdefault("_strict_response_validation", True)
    kw.setdefault("timeout", TIMEOUT)
    return openai.OpenAI(api_key=key, base_url=emu.base_url, max_retries=0, **kw)


def async_client(emu: OpenAIEmulator, key: str = GOOD_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=key, base_url=emu.base_url, max_retries=0, timeout=TIMEOUT, _strict_response_validation=True
    )


def raw_post(
    emu: OpenAIEmulator, path: str, body: bytes, key: str | None = GOOD_KEY
) -> tuple[int, dict[str, str], bytes]:
    """POST with the standard library, to see exactly what is on the wire."""
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=TIMEOUT)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    try:
        connection.request("POST", f"/v1{path}", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# --------------------------------------------------------------------------- chat completions


def test_chat_completion_non_stream(emu: OpenAIEmulator) -> None:
    completion = client(emu).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.system_fingerprint
    assert abs(completion.created - time.time()) < 60
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello from the OpenAI emulator" == reply_text()
    assert choice.message.refusal is None
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        MESSAGES_TOKENS,
        5,
        MESSAGES_TOKENS + 5,
    )
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.prompt_tokens_details.audio_tokens == 0
    assert usage.completion_tokens_details is not None

    [request] = emu.requests
    assert (request["method"], request["path"], request["key"]) == ("POST", "/v1/chat/completions", GOOD_KEY)
    assert request["json"]["messages"] == MESSAGES
    assert request["headers"]["Authorization"] == f"Bearer {GOOD_KEY}"  # lookups ignore case
    assert request["headers"]["content-type"] == "application/json"
    assert isinstance(request["time"], float)


def test_chat_completion_honours_n_and_max_tokens(emu: OpenAIEmulator) -> None:
    completion = client(emu).chat.completions.create(model="gpt-4o", messages=MESSAGES, n=2, max_completion_tokens=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert {c.message.content for c in completion.choices} == {"Hello from"}
    assert {c.finish_reason for c in completion.choices} == {"length"}
    assert completion.usage is not None and completion.usage.completion_tokens == 4

    legacy = client(emu).chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1)
    assert legacy.choices[0].message.content == "Hello"


def test_chat_completion_unknown_fields_and_report_usage(emu: OpenAIEmulator) -> None:
    emu.report_usage = False
    completion = client(emu).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_body={"stream_chunks": 7, "some_future_field": {"x": 1}},
    )
    assert completion.usage is None
    assert completion.choices[0].message.content == "Hello from the OpenAI emulator word5 word6"


def test_chat_completion_stream_with_usage(emu: OpenAIEmulator) -> None:
    chunks = list(
        client(emu).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"stream_chunks": 3},
        )
    )
    assert len(chunks) == 1 + 3 + 1 + 1  # role, content, finish, usage
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert [c.choices[0].delta.content for c in chunks[1:4]] == ["Hello", " from", " the"]
    assert chunks[4].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        MESSAGES_TOKENS,
        3,
        MESSAGES_TOKENS + 3,
    )


def test_chat_completion_stream_without_usage(emu: OpenAIEmulator) -> None:
    chunks = list(client(emu).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert len(chunks) == 1 + 5 + 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply_text()
    assert all(c.usage is None for c in chunks)

    emu.usage_in_stream = False  # even when asked for
    chunks = list(
        client(emu).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len(chunks) == 1 + 5 + 1 and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_chat_stream_wire_format(emu: OpenAIEmulator) -> None:
    body = json.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": MESSAGES,
            "stream": True,
            "stream_chunks": 2,
            "stream_options": {"include_usage": True},
        }
    )
    status, headers, raw = raw_post(emu, "/chat/completions", body.encode())
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-request-id"].startswith("req_")
    events = raw.decode().split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert len(payloads) == 1 + 2 + 1 + 1
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 2


def test_stream_gate_pauses_after_each_chunk(emu: OpenAIEmulator) -> None:
    """Chunk i reaches the client while the server waits for release(i): proof of per-chunk flushing."""
    emu.enable_stream_gate()
    arrivals: list[tuple[str, float]] = []
    stream = client(emu).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"stream_chunks": 3}
    )
    released_at: dict[int, float] = {}
    for chunk in stream:
        content = chunk.choices[0].delta.content
        arrivals.append((content or "", time.monotonic()))
        if content:
            index = len([a for a in arrivals if a[0]]) - 1
            time.sleep(0.2)  # the server must be holding chunk index+1 back meanwhile
            released_at[index] = time.monotonic()
            emu.release(index)
    contents = [c for c, _ in arrivals if c]
    assert contents == ["Hello", " from", " the"]
    content_times = [t for c, t in arrivals if c]
    assert content_times[1] >= released_at[0] and content_times[2] >= released_at[1]


def test_stream_gate_release_from_another_thread(emu: OpenAIEmulator) -> None:
    emu.enable_stream_gate()
    emu.release(1)  # releases are remembered
    started = time.monotonic()  # before the timer starts, so its 0.2 s lie inside the measure
    timer = threading.Timer(0.2, emu.release, args=(0,))
    timer.start()
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client(emu).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"stream_chunks": 2}
        )
    )
    timer.join()
    assert text == "Hello from"
    # Timer waits on a condition whose timeout may end a hair early; the
    # point is that the stream waited for the release, not the exact 0.2 s.
    assert time.monotonic() - started >= 0.15


# --------------------------------------------------------------------------- legacy completions


def test_text_completion(emu: OpenAIEmulator) -> None:
    completion = client(emu).completions.create(model="gpt-4o-mini", prompt="one two three", max_tokens=4)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "Hello from the OpenAI"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)


def test_text_completion_stream(emu: OpenAIEmulator) -> None:
    # The real API sends "finish_reason": null on all but the last chunk (see
    # openai/openai-openapi#100); the SDK's Completion type does not allow it,
    # so strict validation would reject the genuine article too: lenient here.
    chunks = list(
        client(emu, _strict_response_validation=False).completions.create(
            model="gpt-4o-mini", prompt="one two", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply_text()
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * 5 + ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 2 + 5


# --------------------------------------------------------------------------- embeddings


def test_embeddings_float(emu: OpenAIEmulator) -> None:
    # Strict validation runs before the SDK's base64 decoding, so ask for floats here.
    result = client(emu).embeddings.create(
        model="text-embedding-3-small", input=["first text", "second"], encoding_format="float"
    )
    assert result.object == "list" and result.model == "text-embedding-3-small"
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in result.data)
    assert abs(sum(v * v for v in result.data[0].embedding) - 1.0) < 1e-5
    assert result.data[0].embedding != result.data[1].embedding
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (3, 3)

    again = client(emu).embeddings.create(model="text-embedding-3-small", input="first text", encoding_format="float")
    assert again.data[0].embedding == result.data[0].embedding  # deterministic

    sized = client(emu).embeddings.create(
        model="text-embedding-3-small", input="x", dimensions=3, encoding_format="float"
    )
    assert len(sized.data[0].embedding) == 3


def test_embeddings_base64_is_what_the_sdk_asks_by_default(emu: OpenAIEmulator) -> None:
    floats = client(emu).embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="float")
    decoded = client(emu, _strict_response_validation=False).embeddings.create(
        model="text-embedding-3-small", input="hello"
    )
    assert emu.last_request["json"]["encoding_format"] == "base64"
    assert decoded.data[0].embedding == floats.data[0].embedding

    status, _, raw = raw_post(
        emu,
        "/embeddings",
        json.dumps({"model": "text-embedding-3-small", "input": "hello", "encoding_format": "base64"}).encode(),
    )
    assert status == 200
    packed = base64.b64decode(json.loads(raw)["data"][0]["embedding"])
    assert list(struct.unpack("<8f", packed)) == floats.data[0].embedding


# --------------------------------------------------------------------------- models


def test_models_list_and_retrieve(emu: OpenAIEmulator) -> None:
    models = client(emu).models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
    assert all(m.object == "model" for m in models.data)
    model = client(emu).models.retrieve("gpt-4o")
    assert model.id == "gpt-4o" and model.owned_by
    with pytest.raises(openai.NotFoundError) as err:
        client(emu).models.retrieve("gpt-nope")
    assert err.value.code == "model_not_found"


# --------------------------------------------------------------------------- responses API


def test_responses_non_stream(emu: OpenAIEmulator) -> None:
    response = client(emu).responses.create(model="gpt-4o-mini", input="three little words", instructions="Be kind")
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed"
    assert response.output_text == reply_text()
    assert response.output[0].type == "message"
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == ((3 + 3) + (2 + 3), 5, 11 + 5)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_truncated_by_max_output_tokens(emu: OpenAIEmulator) -> None:
    response = client(emu).responses.create(
        model="gpt-4o-mini",
        input=[{"role": "user", "content": "hi"}],
        max_output_tokens=2,
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Hello from"


def test_responses_stream_event_sequence(emu: OpenAIEmulator) -> None:
    events = list(client(emu).responses.create(model="gpt-4o-mini", input="hi", stream=True))
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == reply_text()
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None and completed.response.usage.output_tokens == 5
    assert completed.response.output_text == reply_text()


def test_responses_stream_helper_and_no_usage(emu: OpenAIEmulator) -> None:
    emu.usage_in_stream = False
    with client(emu).responses.stream(model="gpt-4o-mini", input="hi") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == reply_text()
    assert final.usage is None


def test_responses_missing_model(emu: OpenAIEmulator) -> None:
    status, _, raw = raw_post(emu, "/responses", b'{"input": "hi"}')
    assert status == 400
    assert json.loads(raw)["error"]["param"] == "model"


# --------------------------------------------------------------------------- images, audio, moderations


def test_images_url_and_b64(emu: OpenAIEmulator) -> None:
    result = client(emu).images.generate(model="dall-e-3", prompt="a red square", n=1)
    assert result.data is not None and result.data[0].url is not None
    assert result.data[0].revised_prompt == "a red square"
    with urllib.request.urlopen(result.data[0].url, timeout=TIMEOUT) as image:
        assert image.read().startswith(b"\x89PNG\r\n\x1a\n")

    b64 = client(emu).images.generate(model="gpt-image-1", prompt="a red square", n=2)
    assert b64.data is not None and len(b64.data) == 2
    assert base64.b64decode(b64.data[0].b64_json or "").startswith(b"\x89PNG")
    assert b64.usage is not None and b64.usage.input_tokens == 3


def test_audio_speech(emu: OpenAIEmulator) -> None:
    with client(emu).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello there"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = response.read()
    assert audio.startswith(b"ID3")
    assert len(audio) > 2 * 417


def test_audio_transcriptions(emu: OpenAIEmulator) -> None:
    audio = b"RIFF" + b"\x00" * 1996
    transcription = client(emu).audio.transcriptions.create(model="whisper-1", file=("clip.wav", audio, "audio/wav"))
    assert transcription.text == "Hello from the OpenAI emulator, 2000 bytes heard."
    record = emu.last_request
    assert record["json"] is None
    assert record["form"]["model"] == "whisper-1"
    assert record["files"]["file"]["filename"] == "clip.wav" and record["files"]["file"]["size"] == 2000

    text = client(emu).audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("clip.wav", audio, "audio/wav"), response_format="text"
    )
    assert isinstance(text, str)
    assert text.strip() == "Hello from the OpenAI emulator, 2000 bytes heard."

    verbose = client(emu).audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", audio, "audio/wav"), response_format="verbose_json"
    )
    assert verbose.language == "english" and verbose.segments


def test_moderations(emu: OpenAIEmulator) -> None:
    result = client(emu).moderations.create(input=["I will kill the process", "hello"])
    assert result.id.startswith("modr-")
    flagged, clean = result.results
    assert flagged.flagged and flagged.categories.violence and flagged.category_scores.violence > 0.5
    assert not clean.flagged and not clean.categories.violence
    assert clean.categories.self_harm is False


# --------------------------------------------------------------------------- key behaviours and errors


def test_unknown_key_is_invalid(emu: OpenAIEmulator) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        client(emu, key="sk-not-configured").models.list()
    assert err.value.status_code == 401
    assert err.value.code == "invalid_api_key" and err.value.type == "invalid_request_error"
    assert err.value.body is not None and "Incorrect API key provided" in err.value.message
    assert emu.last_request["key"] == "sk-not-configured"


def test_missing_key(emu: OpenAIEmulator) -> None:
    status, _, raw = raw_post(emu, "/chat/completions", b"{}", key=None)
    assert status == 401
    assert set(json.loads(raw)["error"]) == {"message", "type", "param", "code"}


def test_behaviour_invalid_overrides_valid_key(emu: OpenAIEmulator) -> None:
    emu.set_key_behaviour(GOOD_KEY, "invalid")
    with pytest.raises(openai.AuthenticationError):
        client(emu).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    emu.set_key_behaviour("sk-anything", "ok")
    assert client(emu, key="sk-anything").models.list().data


def test_behaviour_rate_limited(emu: OpenAIEmulator) -> None:
    emu.set_key_behaviour("sk-limited", "rate_limited", retry_after=7)
    with pytest.raises(openai.RateLimitError) as err:
        client(emu, key="sk-limited").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code == 429
    assert err.value.code == "rate_limit_exceeded"
    assert err.value.response.headers["retry-after"] == "7"

    emu.set_key_behaviour("sk-limited-default", "rate_limited")
    with pytest.raises(openai.RateLimitError) as err:
        client(emu, key="sk-limited-default").models.list()
    assert err.value.response.headers["retry-after"] == "30"


def test_behaviour_quota(emu: OpenAIEmulator) -> None:
    emu.set_key_behaviour("sk-broke", "quota")
    with pytest.raises(openai.RateLimitError) as err:
        client(emu, key="sk-broke").embeddings.create(model="text-embedding-3-small", input="x")
    assert (err.value.code, err.value.type) == ("insufficient_quota", "insufficient_quota")


def test_behaviour_server_error(emu: OpenAIEmulator) -> None:
    emu.set_key_behaviour("sk-500", "server_error")
    with pytest.raises(openai.InternalServerError) as err:
        client(emu, key="sk-500").responses.create(model="gpt-4o-mini", input="hi")
    assert err.value.status_code == 500 and err.value.type == "server_error"


def test_behaviour_slow(emu: OpenAIEmulator) -> None:
    emu.set_key_behaviour("sk-slow", "slow", delay=0.3)
    started = time.monotonic()
    completion = client(emu, key="sk-slow").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert time.monotonic() - started >= 0.3
    assert completion.choices[0].message.content == reply_text()

    with pytest.raises(openai.APITimeoutError):
        client(emu, key="sk-slow", timeout=0.1).models.list()


def test_behaviour_die_mid_stream(emu: OpenAIEmulator) -> None:
    emu.set_key_behaviour("sk-dies", "die_mid_stream")
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client(emu, key="sk-dies").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "Hello", " from"]  # role chunk + 2 content chunks, no finish

    emu.set_key_behaviour("sk-dies-early", "die_mid_stream", chunks_before_death=0)
    events: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for event in client(emu, key="sk-dies-early").responses.create(model="gpt-4o-mini", input="hi", stream=True):
            events.append(event.type)
    assert "response.output_text.delta" not in events and "response.completed" not in events

    with pytest.raises(openai.APIConnectionError):  # not streaming: dropped before answering
        client(emu, key="sk-dies").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_die_mid_stream_on_the_wire(emu: OpenAIEmulator) -> None:
    emu.set_key_behaviour("sk-dies", "die_mid_stream", chunks_before_death=1)
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}).encode()
    with pytest.raises(http.client.IncompleteRead) as err:
        raw_post(emu, "/chat/completions", body, key="sk-dies")
    received = err.value.partial.decode()
    assert received.count("data: ") == 2 and "[DONE]" not in received


def test_set_key_behaviour_validates(emu: OpenAIEmulator) -> None:
    with pytest.raises(ValueError):
        emu.set_key_behaviour("k", "explode")
    with pytest.raises(ValueError):
        emu.set_key_behaviour("k", "slow")


def test_bad_requests(emu: OpenAIEmulator) -> None:
    status, _, raw = raw_post(emu, "/chat/completions", b"{not json")
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error" and set(error) == {"message", "type", "param", "code"}

    with pytest.raises(openai.BadRequestError) as err:
        client(emu).chat.completions.create(model="gpt-4o-mini", messages=openai.omit)  # type: ignore[call-overload]
    assert err.value.param == "messages"

    status, _, raw = raw_post(emu, "/chat/completions", json.dumps({"messages": MESSAGES}).encode())
    assert status == 400 and "model" in json.loads(raw)["error"]["message"]

    with pytest.raises(openai.NotFoundError) as not_found:
        client(emu).chat.completions.create(model="gpt-unknown", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"

    status, _, raw = raw_post(emu, "/no/such/endpoint", b"{}")
    assert status == 404 and json.loads(raw)["error"]["message"] == "Invalid URL (POST /v1/no/such/endpoint)"


def test_reset(emu: OpenAIEmulator) -> None:
    emu.set_key_behaviour(GOOD_KEY, "server_error")
    emu.usage_in_stream = emu.report_usage = False
    emu.enable_stream_gate()
    with pytest.raises(openai.InternalServerError):
        client(emu).models.list()
    requests = emu.requests
    emu.reset()
    assert requests == [] and emu.requests is requests
    assert emu.usage_in_stream and emu.report_usage
    chunks = list(client(emu).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert len(chunks) == 7  # no gate any more, key works again


# --------------------------------------------------------------------------- async use


@pytest.mark.asyncio
async def test_async_client_stream_and_gate(emu: OpenAIEmulator) -> None:
    async with async_client(emu) as aclient:
        completion = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert completion.choices[0].message.content == reply_text()

        emu.enable_stream_gate()
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"stream_chunks": 2}
        )
        texts = []
        async for chunk in stream:
            content = chunk.choices[0].delta.content
            if content:
                texts.append(content)
                emu.release(len(texts) - 1)  # from this loop's thread, not the server's
        assert texts == ["Hello", " from"]
        emu.disable_stream_gate()

        events = [e.type async for e in await aclient.responses.create(model="gpt-4o-mini", input="x", stream=True)]
        assert events[-1] == "response.completed"


# --------------------------------------------------------------------------- lifecycle


@pytest.fixture
def own_emulator() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(valid_keys=("k1", "k2"), models=("m1",)) as emulator:
        yield emulator


def test_constructor_arguments_and_stop_releases_paused_streams(own_emulator: OpenAIEmulator) -> None:
    assert own_emulator.base_url == f"http://127.0.0.1:{own_emulator.port}/v1"
    assert [m.id for m in client(own_emulator, key="k2").models.list().data] == ["m1"]
    with pytest.raises(openai.AuthenticationError):
        client(own_emulator, key=GOOD_KEY).models.list()

    own_emulator.enable_stream_gate()
    stream = client(own_emulator, key="k1").chat.completions.create(model="m1", messages=MESSAGES, stream=True)
    next(stream), next(stream)  # role chunk, then content chunk 0: the server now waits for release(0)
    started = time.monotonic()
    own_emulator.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(openai.APIConnectionError):
        list(stream)
    own_emulator.stop()  # idempotent
