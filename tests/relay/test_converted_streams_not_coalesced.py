"""Converted streams are forwarded event by event, never collected: the
upstream sends its next event only after the client has seen the previous
one (the emulators' stream gate), so a relay that buffered would stall.
The same test as tests/relay/test_openai_sdk.py's for pass-through."""

from __future__ import annotations

import anthropic
import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_openai_client_on_an_anthropic_channel(anthropic_setup, gateway):
    # given: the Anthropic emulator sends text delta i+1 only once released
    emulator = anthropic_setup["anthropic_emulator"]
    emulator.reply_words = 8
    emulator.enable_stream_gate()
    client = openai.OpenAI(base_url=gateway.base_url, api_key=anthropic_setup["key"], max_retries=0, timeout=15)
    stream = client.chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "x"}], stream=True
    )
    # when / then: each converted chunk arrives before the next is released
    texts: list[str] = []
    for chunk in stream:
        text = chunk.choices[0].delta.content if chunk.choices else None
        if text:
            emulator.release(len(texts))
            texts.append(text)
    assert len(texts) == 8


def test_anthropic_client_on_an_openai_channel(relay_setup, gateway):
    # given: the OpenAI emulator sends content chunk i+1 only once released
    emulator = relay_setup["emulator"]
    emulator.enable_stream_gate()
    client = anthropic.Anthropic(base_url=gateway.url, api_key=relay_setup["key"], max_retries=0, timeout=15)
    # when / then
    texts: list[str] = []
    with client.messages.stream(
        model="gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": "x"}], extra_body={}
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                emulator.release(len(texts))
                texts.append(event.delta.text)
    assert len(texts) == 5
