"""OpenAI and OpenAI-compatible upstreams: the body passes through untouched
unless the model is mapped or stream usage must be requested."""

from __future__ import annotations

from typing import Any

import orjson

from relay.snapshot import ChannelSnap

# Endpoints whose JSON body carries "model" and may be rewritten.
JSON_ENDPOINTS = frozenset(
    {"chat/completions", "completions", "embeddings", "responses", "images/generations", "audio/speech", "moderations"}
)
STREAM_USAGE_ENDPOINTS = frozenset({"chat/completions", "completions"})


def upstream_url(channel: ChannelSnap, endpoint: str) -> str:
    return f"{channel.base_url}/{endpoint}"


def upstream_headers(channel: ChannelSnap, secret: str, content_type: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": content_type}
    if channel.type == "openrouter":
        headers["HTTP-Referer"] = channel.config.get("referer", "https://github.com/oneproxy")
    return headers


def prepare_body(
    channel: ChannelSnap,
    endpoint: str,
    raw: bytes,
    payload: dict[str, Any] | None,
    model: str,
    stream: bool,
) -> bytes:
    """The request body for this channel; ``raw`` itself when nothing changes."""
    if payload is None:
        return raw
    upstream_model = channel.upstream_model(model)
    want_usage = (
        stream
        and channel.include_usage
        and endpoint in STREAM_USAGE_ENDPOINTS
        and not (payload.get("stream_options") or {}).get("include_usage")
    )
    if upstream_model == model and not want_usage:
        return raw
    changed = dict(payload)
    changed["model"] = upstream_model
    if want_usage:
        changed["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(changed)
