"""The gateway driven by the official openai SDK, against the OpenAI emulator."""

from __future__ import annotations

import openai
import pytest

from tests.gateway import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def client(gateway, key, **kw):
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, _strict_response_validation=True, max_retries=0, **kw)


def settled(n: int) -> int:
    from billing.models import UsageLog

    return int(wait_for(lambda: UsageLog.objects.count() >= n and UsageLog.objects.count()))


def test_chat_completion_non_stream(relay_setup, gateway):
    # given
    sdk = client(gateway, relay_setup["key"])
    # when
    reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}])
    # then
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.prompt_tokens > 0
    sent = relay_setup["emulator"].last_request
    assert sent["key"] == "sk-upstream-good"
    settled(1)
    from billing.models import UsageLog

    row = UsageLog.objects.get()
    assert (row.prompt_tokens, row.completion_tokens) == (reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert row.cost > 0 and row.status == 200 and row.channel_id == relay_setup["channel"].pk and not row.stream


def test_chat_stream_strips_usage_chunk_the_client_did_not_ask_for(relay_setup, gateway):
    # given
    sdk = client(gateway, relay_setup["key"])
    # when
    chunks = list(
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}], stream=True)
    )
    # then: the relay asked upstream for usage, the client saw none of it
    assert relay_setup["emulator"].last_request["json"]["stream_options"] == {"include_usage": True}
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    settled(1)
    from billing.models import UsageLog

    row = UsageLog.objects.get()
    assert row.stream and row.completion_tokens > 0 and not row.estimated


def test_chat_stream_keeps_usage_chunk_when_asked(relay_setup, gateway):
    sdk = client(gateway, relay_setup["key"])
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].choices == []


async def test_async_client_chat_and_stream(relay_setup, gateway):
    sdk = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=relay_setup["key"], _strict_response_validation=True)
    reply = await sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content
    stream = await sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    assert [c async for c in stream]
    await sdk.close()


def test_completions_embeddings_models_and_responses(relay_setup, gateway):
    sdk = client(gateway, relay_setup["key"])
    completion = sdk.completions.create(model="gpt-4o-mini", prompt="Once upon")
    assert completion.choices[0].text
    embedding = sdk.embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="float")
    assert len(embedding.data[0].embedding) > 0
    listed = sorted(m.id for m in sdk.models.list())
    assert listed == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    assert sdk.models.retrieve("gpt-4o").id == "gpt-4o"
    response = sdk.responses.create(model="gpt-4o-mini", input="Say hi")
    assert response.output_text
    settled(3)
    from billing.models import UsageLog

    by_endpoint = {row.endpoint: row for row in UsageLog.objects.all()}
    assert by_endpoint["responses"].prompt_tokens == response.usage.input_tokens
    assert by_endpoint["embeddings"].cost > 0


def test_stream_is_not_buffered(relay_setup, gateway):
    # given: the emulator sends chunk 2 only after we saw chunk 1
    emulator = relay_setup["emulator"]
    emulator.enable_stream_gate()
    sdk = client(gateway, relay_setup["key"])
    stream = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True)
    # when / then: if the relay buffered, next() would block until timeout
    received = []
    for i, chunk in enumerate(stream):
        received.append(chunk)
        emulator.release(i)
        emulator.release(i + 1)
    assert len(received) >= 5


def test_balance_token_used_and_usage_logs_agree(relay_setup, gateway):
    # given
    from billing.models import LedgerEntry, Token, UsageLog, User

    sdk = client(gateway, relay_setup["key"])
    before = User.objects.get(pk=relay_setup["user"].pk).balance
    # when
    for i in range(12):
        if i % 2:
            list(
                sdk.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": f"n {i}"}], stream=True
                )
            )
        else:
            sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"n {i}"}])
    settled(12)
    # then
    total = sum(UsageLog.objects.values_list("cost", flat=True))
    user = User.objects.get(pk=relay_setup["user"].pk)
    token = Token.objects.get(pk=relay_setup["token"].pk)
    assert total > 0
    assert user.balance == before - total
    assert token.used == total
    assert sum(LedgerEntry.objects.filter(user=user).values_list("amount", flat=True)) == user.balance


def test_images_audio_and_moderations_pass_through(relay_setup, gateway):
    # given: the channel lists the models these endpoints use
    from billing.models import UsageLog
    from channels_app.models import Channel

    Channel.objects.filter(pk=relay_setup["channel"].pk).update(
        models=["gpt-4o-mini", "dall-e-3", "tts-1", "whisper-1", "omni-moderation-latest"]
    )
    gateway.reload()
    sdk = client(gateway, relay_setup["key"])
    # when
    image = sdk.images.generate(model="dall-e-3", prompt="a cat")
    speech = sdk.audio.speech.create(model="tts-1", voice="alloy", input="hello there")
    text = sdk.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"ID3fake-audio", "audio/mpeg"))
    moderation = sdk.moderations.create(model="omni-moderation-latest", input="hello")
    # then
    assert image.data and speech.content and text.text and moderation.results
    paths = [r["path"] for r in relay_setup["emulator"].requests]
    assert paths == ["/v1/images/generations", "/v1/audio/speech", "/v1/audio/transcriptions", "/v1/moderations"]
    settled(4)
    assert set(UsageLog.objects.values_list("endpoint", flat=True)) == {
        "images/generations",
        "audio/speech",
        "audio/transcriptions",
        "moderations",
    }


def test_dashboard_billing_endpoints_show_balance_in_openai_legacy_shape(relay_setup, gateway):
    # given: a capped token and an uncapped one
    import requests

    from billing import services
    from billing.models import User

    capped, capped_key = services.create_token(user=relay_setup["user"], name="capped", quota=2_000_000)
    gateway.reload()
    sdk = client(gateway, capped_key)
    sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    settled(1)

    # when
    def get(key, path):
        r = requests.get(f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()

    sub = get(capped_key, "/dashboard/billing/subscription")
    usage = get(capped_key, "/v1/dashboard/billing/usage")
    # then: the cap, and what was used in cents
    from billing.models import Token

    used = Token.objects.get(pk=capped.pk).used
    assert sub["hard_limit_usd"] == 2.0 and usage["total_usage"] == used / 10_000
    balance = User.objects.get(pk=relay_setup["user"].pk).balance
    uncapped = get(relay_setup["key"], "/v1/dashboard/billing/subscription")
    uncapped_usage = get(relay_setup["key"], "/v1/dashboard/billing/usage")
    assert round(uncapped["hard_limit_usd"] - uncapped_usage["total_usage"] / 100, 6) == balance / 1_000_000


def test_server_timing_splits_the_gateway_own_time_from_the_upstream_wait(relay_setup, gateway):
    import re

    # given: a warm relay (the tokenizer loads on first use) and an upstream that takes 0.3 s to answer
    sdk = client(gateway, relay_setup["key"])
    messages = [{"role": "user", "content": "Say hi"}]
    sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
    relay_setup["emulator"].set_key_behaviour("sk-upstream-good", "slow", delay=0.3)
    # when: a whole answer and a stream
    whole = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    with sdk.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=messages, stream=True) as s:
        streamed = s.headers["server-timing"]
        list(s.iter_lines())
    # then: each says how long the gateway worked, held and settled, and waited on the upstream
    for header in (whole.headers["server-timing"], streamed):
        match = re.fullmatch(r"gateway;dur=(\d+\.\d{3}), ledger;dur=(\d+\.\d{3}), upstream;dur=(\d+\.\d{3})", header)
        assert match, header
        gateway_ms, ledger_ms, upstream_ms = (float(m) for m in match.groups())
        assert upstream_ms >= 300 and 0 < gateway_ms < 300 and 0 < ledger_ms < 300
