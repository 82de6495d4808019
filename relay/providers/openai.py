"""OpenAI and OpenAI-compatible upstreams. The hub shape is OpenAI's own, so
a request in the OpenAI format passes through untouched unless the model is
mapped or stream usage must be requested."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from relay import keystate
from relay.errors import mask_secrets
from relay.keystate import Verdict
from relay.metering import Usage, trailing_usage, usage_from_openai
from relay.providers.base import HubDecoder, Image, Json, UpstreamRequest
from relay.snapshot import ChannelSnap

# Endpoints whose JSON body carries "model" and may be rewritten.
JSON_ENDPOINTS = frozenset(
    {"chat/completions", "completions", "embeddings", "responses", "images/generations", "audio/speech", "moderations"}
)
STREAM_USAGE_ENDPOINTS = frozenset({"chat/completions", "completions"})
# How much of a stream is kept to count tokens when the upstream reports none.
DELIVERED_KEEP = 1 << 20
DONE = b"data: [DONE]\n\n"
# A Responses API stream ends on one of these events (no [DONE]).
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


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


def answer_text(parsed: object) -> str:
    """The generated text of an OpenAI-shaped response or stream chunk."""
    if not isinstance(parsed, dict):
        return ""
    parts = []
    for choice in parsed.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message") or choice.get("delta") or {}
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(choice.get("text"), str):
                parts.append(choice["text"])
    if isinstance(parsed.get("delta"), str):  # responses API text deltas
        parts.append(parsed["delta"])
    return "".join(parts)


def event_type(event: bytes) -> str | None:
    """The ``event:`` name of an SSE event, else its data's ``type``."""
    if event.startswith(b"event:"):
        return event[6 : event.find(b"\n")].strip().decode("latin-1")
    at = event.find(b"data:")
    if at < 0:
        return None
    try:
        data = orjson.loads(event[at + 5 :])
    except orjson.JSONDecodeError:
        return None
    return data.get("type") if isinstance(data, dict) and isinstance(data.get("type"), str) else None


def mask_event(event: bytes, secret: bytes) -> bytes:
    text = event.decode("utf-8", "replace")
    if secret:
        text = text.replace(secret.decode(), "***")
    return mask_secrets(text).encode()


def error_event(message: str, request_id: str) -> bytes:
    """The tail of a broken OpenAI-format stream (no [DONE] after it)."""
    err = {
        "error": {
            "message": f"Upstream stream failed: {message} (request id: {request_id})",
            "type": "server_error",
            "code": "upstream_stream_error",
        }
    }
    return b"data: " + orjson.dumps(err) + b"\n\n"


class PassThrough:
    """An OpenAI-format stream passed through: reads usage, drops the usage
    chunk the client did not ask for, holds [DONE] back until the usage is
    queued, masks keys in error events."""

    __slots__ = ("client_wants_usage", "delivered", "done", "done_marker", "error", "renames", "secret", "usage")

    def __init__(
        self, client_wants_usage: bool, secret: str = "", renames: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        self.client_wants_usage = client_wants_usage
        self.secret = secret.encode()
        self.renames = renames
        self.done_marker = False  # the upstream sent [DONE]
        self.usage: Usage | None = None
        self.done = False
        self.error: str | None = None
        self.delivered = bytearray()

    def take(self, event: bytes) -> bytes | None:
        """Look at one SSE event; what to send of it (None: nothing). An error
        event, or any event quoting the key, is sent with keys masked."""
        if event.startswith(b"data: [DONE]"):
            self.done = self.done_marker = True
            return None  # sent last, after the usage event is queued
        if b'"error"' in event or (self.secret and self.secret in event):
            event = mask_event(event, self.secret)
        for upstream_name, client_name in self.renames:
            event = event.replace(upstream_name, client_name)
        if b"response." in event[:64] and event_type(event) in TERMINAL_EVENTS:
            self.done = True
        if b'"usage":{' in event or b'"usage": {' in event:
            try:
                parsed = orjson.loads(event[event.index(b"{") :])
            except (orjson.JSONDecodeError, ValueError):
                parsed = None
            if isinstance(parsed, dict):
                usage = usage_from_openai(parsed.get("usage") or (parsed.get("response") or {}).get("usage"))
                if usage is not None:
                    self.usage = usage
                if not self.client_wants_usage and parsed.get("choices") == []:
                    return None  # the usage chunk we asked for on the client's behalf
        if len(self.delivered) < DELIVERED_KEEP:
            self.delivered += event
        return event

    def end(self) -> bytes:
        # [DONE] as the upstream sent it; a Responses stream ends on its
        # terminal event alone, as OpenAI's does.
        return DONE if self.done_marker else b""

    def error_tail(self, message: str, request_id: str) -> bytes:
        return error_event(message, request_id)

    def delivered_text(self) -> str:
        parts = []
        for line in bytes(self.delivered).split(b"\n"):
            if not line.startswith(b"data: {"):
                continue
            try:
                parts.append(answer_text(orjson.loads(line[6:])))
            except orjson.JSONDecodeError:
                continue
        return "".join(parts)


class ChunkDecoder:
    """An OpenAI chat stream as hub chunks (already the hub shape: parse only)."""

    __slots__ = ("done", "error", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.done = False
        self.error: str | None = None

    def feed(self, event: bytes) -> list[Json]:
        chunks = []
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("error"), dict):
                self.error = mask_secrets(str(chunk["error"].get("message") or "upstream error"))
                continue
            usage = usage_from_openai(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
            chunks.append(chunk)
        return chunks


class OpenAIProvider:
    format = "openai"

    def native_request(
        self,
        channel: ChannelSnap,
        secret: str,
        endpoint: str,
        raw: bytes,
        payload: Json | None,
        model: str,
        stream: bool,
        content_type: str,
        client_headers: Mapping[str, str],
    ) -> UpstreamRequest:
        return UpstreamRequest(
            upstream_url(channel, endpoint),
            upstream_headers(channel, secret, content_type),
            prepare_body(channel, endpoint, raw, payload, model, stream),
        )

    def hub_request(
        self, channel: ChannelSnap, secret: str, hub: Json, model: str, stream: bool, images: Mapping[str, Image]
    ) -> UpstreamRequest:
        body = dict(hub)
        body["model"] = channel.upstream_model(model)
        if stream:
            body["stream"] = True
            if channel.include_usage:
                body["stream_options"] = {"include_usage": True}
        return UpstreamRequest(
            upstream_url(channel, "chat/completions"),
            upstream_headers(channel, secret, "application/json"),
            orjson.dumps(body),
        )

    def remote_images(self, hub: Json) -> list[str]:
        return []  # OpenAI-compatible servers fetch image URLs themselves

    def native_usage(self, body: bytes) -> Usage | None:
        # The usage object alone: an embeddings answer runs to megabytes.
        return usage_from_openai(trailing_usage(body))

    def native_stream(
        self, client_wants_usage: bool, secret: str, renames: tuple[tuple[bytes, bytes], ...]
    ) -> PassThrough:
        return PassThrough(client_wants_usage, secret, renames)

    def hub_response(self, body: bytes, model: str) -> tuple[Json, Usage | None]:
        parsed = orjson.loads(body)
        if not isinstance(parsed, dict):
            raise ValueError("the upstream's answer is not a JSON object")
        return parsed, usage_from_openai(parsed.get("usage"))

    def hub_decoder(self, model: str) -> HubDecoder:
        return ChunkDecoder()

    def judge(
        self, status: int, body: bytes, headers: Mapping[str, str], secret: str, phrases: tuple[str, ...]
    ) -> Verdict:
        return keystate.judge(status, body, headers, secret, phrases)

    def probe_request(self, channel: ChannelSnap, secret: str, model: str) -> UpstreamRequest:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        return UpstreamRequest(
            upstream_url(channel, "chat/completions"),
            upstream_headers(channel, secret, "application/json"),
            orjson.dumps(body),
        )


PROVIDER = OpenAIProvider()
