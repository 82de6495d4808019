"""Sizing a hold: the most a request can use, from its body alone, without
a tokenizer (the exact count comes from the upstream at settlement)."""

from __future__ import annotations

from typing import Any

import orjson

from relay.metering import Usage

# A token of cl100k or o200k is at least one byte of UTF-8 and, in prose,
# code, JSON and tool schemas, rarely under two (measured: 2.7-4.5 bytes a
# token): a text's bytes over this bound its tokens; non-ASCII text counts
# extra (``_text_bytes``). tests/relay/test_prompt_estimate.py checks the
# bound against tiktoken's counts on a corpus of each.
BYTES_PER_TOKEN = 2
# The most one image costs as input at the providers we route to (OpenAI's
# high detail tiles, Anthropic's ~1,600 at 1.15 megapixels, Gemini's 258 per
# tile), with room to spare; its base64 bytes are not counted as text.
IMAGE_TOKENS = 4_000
# Audio uploads (transcriptions, translations) are held for their longest
# plausible duration: the upload's size at 16 kbit/s, the lowest bitrate
# speech is commonly encoded at; and, for models that bill audio as tokens,
# generous token rates per second of audio in and text out.
AUDIO_UPLOADS = frozenset({"audio/transcriptions", "audio/translations"})
AUDIO_BYTES_PER_SECOND = 2_000
AUDIO_TOKENS_PER_SECOND = 50
TEXT_TOKENS_PER_SECOND = 10
GENERATING = frozenset({"chat/completions", "completions", "responses", "messages"})
CAP_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def prompt_estimate(payload: dict[str, Any] | None, raw: bytes) -> int:
    """An upper bound of the prompt's tokens, in one pass over the prompt's
    parts without a tokenizer: each text's UTF-8 bytes over BYTES_PER_TOKEN,
    structured parts (tool calls and results, tool schemas) by their JSON,
    each image (OpenAI ``image_url`` / ``input_image`` parts, Anthropic
    ``image`` blocks, also inside tool results) at IMAGE_TOKENS instead of
    its base64, and a few tokens per message for the roles and separators."""
    if payload is None:
        return 0
    size = images = 0
    messages = payload.get("messages")
    count = 0
    if isinstance(messages, list):
        count = len(messages)
        for message in messages:
            found, part_bytes = _message(message)
            images += found
            size += part_bytes
    for field in ("system", "tools", "functions", "prompt", "input", "instructions", "tool_choice"):
        value = payload.get(field)
        if value is None:
            continue
        if field == "input" and isinstance(value, list) and value and isinstance(value[0], dict):
            count += len(value)  # the Responses API's items
            for item in value:
                found, part_bytes = _message(item)
                images += found
                size += part_bytes
        elif field == "input" and isinstance(value, list) and value and isinstance(value[0], int):
            size += len(value) * BYTES_PER_TOKEN  # embeddings of token ids
        else:
            size += _text_bytes(value)
    return size // BYTES_PER_TOKEN + images * IMAGE_TOKENS + MESSAGE_TOKENS * (count + 1)


# Per message: its role and separators (OpenAI counts 3 or 4).
MESSAGE_TOKENS = 4


def _text_bytes(value: object) -> int:
    """A text's size in ASCII-byte equivalents: its bytes, and half again
    for each byte past the first of a character (Chinese: 4 per character,
    so 2 tokens, where cl100k averages 1.3)."""
    if isinstance(value, str):
        if value.isascii():
            return len(value)
        return (3 * len(value.encode("utf-8", "replace")) - len(value)) // 2
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: generous
        return len(str(value).encode("utf-8", "replace"))


def _message(message: object) -> tuple[int, int]:
    """(images, bytes of everything else) of one message or input item."""
    if not isinstance(message, dict):
        return 0, _text_bytes(message)
    content = message.get("content")
    size = 0
    images = 0
    for name, value in message.items():
        if name == "content" and isinstance(content, list):
            images, inline = _images(content)
            size += _text_bytes(content) - inline
        elif name not in ("role", "type"):
            size += _text_bytes(value)
    return images, size


def _images(parts: list[Any]) -> tuple[int, int]:
    """(images, bytes of their inline data) among content parts."""
    count = inline = 0
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("image_url", "input_image"):
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            count += 1
            inline += len(url) if isinstance(url, str) else 0
        elif kind == "image":
            source = part.get("source")
            data = source.get("data") if isinstance(source, dict) else None
            count += 1
            inline += len(data) if isinstance(data, str) else 0
        elif kind == "tool_result" and isinstance(part.get("content"), list):
            found, data_bytes = _images(part["content"])
            count += found
            inline += data_bytes
    return count, inline


def _positive(value: object) -> int:
    """A multiplier of output as a client sent it (``n``, ``best_of``): 1 unless a positive int."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def most_usage(endpoint: str, payload: dict[str, Any] | None, raw: bytes, prompt: int, default_cap: int) -> Usage:
    """The most a request can use, for its hold: the prompt estimate, the
    completion cap (``default_cap`` when the request sets none) times every
    multiplier of output (``n``, ``best_of``), the images asked for, and for
    an audio upload its longest plausible duration."""
    payload = payload or {}
    if endpoint in AUDIO_UPLOADS:
        seconds = max(1, len(raw) // AUDIO_BYTES_PER_SECOND)
        # Duration-priced models bill the seconds, token-priced ones audio
        # tokens in and text out: the hold covers either.
        return Usage(
            prompt_tokens=seconds * AUDIO_TOKENS_PER_SECOND,
            audio_tokens=seconds * AUDIO_TOKENS_PER_SECOND,
            completion_tokens=seconds * TEXT_TOKENS_PER_SECOND,
            audio_ms=seconds * 1000,
        )
    outputs = max(_positive(payload.get("n")), _positive(payload.get("best_of")))
    if endpoint == "images/generations":
        # gpt-image models also bill output tokens; per-image prices the rest.
        return Usage(prompt_tokens=prompt, completion_tokens=default_cap * outputs, images=outputs)
    if endpoint == "messages/count_tokens":
        return Usage()  # free at Anthropic
    if endpoint not in GENERATING:
        return Usage(prompt_tokens=prompt)
    cap = default_cap
    for field in CAP_FIELDS:
        value = payload.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            cap = value
            break
    return Usage(prompt_tokens=prompt, completion_tokens=cap * outputs)
