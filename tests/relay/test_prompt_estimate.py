"""The hold's prompt estimate (relay/holds.py) is a safe upper bound without
a tokenizer: never below tiktoken's count (cl100k and o200k) on a corpus of
English, Chinese, code, JSON, tool schemas and images, in both inbound
formats; and not so generous that it stops being useful."""

from __future__ import annotations

import base64
import pathlib
from typing import Any

import orjson
import pytest

from relay.holds import IMAGE_TOKENS, prompt_estimate
from relay.tokenizer import encoding

CORPUS = pathlib.Path(__file__).parent / "corpus"
TEXTS = {p.name: p.read_text() for p in sorted(CORPUS.iterdir())}
TOOLS = orjson.loads(TEXTS["tools.json"])
ENCODINGS = ("cl100k_base", "o200k_base")
# Each image's real cost is under this at every provider (Anthropic's is at
# most ~1,600 at 1.15 megapixels; OpenAI's high detail ~1,500 for gpt-4o).
IMAGE_COST = 2_500
PIXEL = base64.b64encode(bytes(range(256)) * 400).decode()  # ~136 KB of base64


def tokens(text: str, name: str) -> int:
    return len(encoding(name).encode(text, disallowed_special=()))


def openai_chat(text: str, *, tools: bool = False, image: bool = False) -> tuple[dict, int]:
    """An OpenAI chat request around ``text``, and the text's own token count
    with OpenAI's 3 per message and 3 for the reply (per encoding: the most)."""
    content: object = text
    if image:
        content = [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
        ]
    body: dict = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a careful assistant."},
            {"role": "user", "content": content},
        ],
    }
    texts = ["You are a careful assistant.", text]
    if tools:
        body["tools"] = TOOLS
        texts.append(orjson.dumps(TOOLS).decode())
    real = max(sum(tokens(t, name) for t in texts) for name in ENCODINGS) + 3 * 2 + 3
    return body, real + (IMAGE_COST if image else 0)


def anthropic_messages(text: str, *, tools: bool = False, image: bool = False) -> tuple[dict, int]:
    content: list = [{"type": "text", "text": text}]
    if image:
        content.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}})
    body: dict = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a careful assistant.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": content}],
    }
    texts = ["You are a careful assistant.", text]
    if tools:
        body["tools"] = [
            {"name": t["function"]["name"], "description": t["function"]["description"],
             "input_schema": t["function"]["parameters"]}
            for t in TOOLS
        ]  # fmt: skip
        texts.append(orjson.dumps(body["tools"]).decode())
    real = max(sum(tokens(t, name) for t in texts) for name in ENCODINGS) + 3 * 2 + 3
    return body, real + (IMAGE_COST if image else 0)


CASES = [
    (build, name, flags)
    for build in (openai_chat, anthropic_messages)
    for name in TEXTS
    for flags in ({}, {"tools": True}, {"image": True})
]


@pytest.mark.parametrize(("build", "name", "flags"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_the_estimate_bounds_the_real_count(build, name, flags):
    # given
    body, real = build(TEXTS[name], **flags)
    # when
    estimate = prompt_estimate(body, orjson.dumps(body))
    # then: never below, and for text at most ~3x (a hold is money set aside)
    assert estimate >= real, (name, flags, estimate, real)
    if not flags.get("image"):
        assert estimate <= 3 * real, (name, flags, estimate, real)


def test_a_whole_conversation_with_every_text_kind_and_images():
    # given: one long conversation, assistant tool calls and their results included
    messages: list[dict[str, Any]] = [{"role": "system", "content": TEXTS["english.txt"]}]
    for text in TEXTS.values():
        messages.append({"role": "user", "content": [{"type": "text", "text": text}]})
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": f"call_{len(messages)}", "type": "function",
                     "function": {"name": "run_sql", "arguments": orjson.dumps({"query": text[:300]}).decode()}}
                ],
            }
        )  # fmt: skip
        messages.append({"role": "tool", "tool_call_id": f"call_{len(messages) - 1}", "content": text[:500]})
    messages.append(
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}] * 3}
    )
    body = {"model": "gpt-4o", "messages": messages, "tools": TOOLS}
    texts = [orjson.dumps(m).decode() for m in messages[:-1]] + [orjson.dumps(TOOLS).decode()]
    real = max(sum(tokens(t, name) for t in texts) for name in ENCODINGS) + 3 * len(messages) + 3
    real += 3 * IMAGE_COST
    # when
    estimate = prompt_estimate(body, orjson.dumps(body))
    # then (the messages' own JSON is counted as the real text here: a generous reference)
    assert estimate >= real


def test_images_count_by_image_not_by_their_base64():
    body, _ = openai_chat("look", image=True)
    # the base64 alone would be ~68,000 tokens at 2 bytes a token
    assert prompt_estimate(body, orjson.dumps(body)) < IMAGE_TOKENS + 100
