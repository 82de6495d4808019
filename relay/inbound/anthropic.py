"""Anthropic's Messages API as clients speak it (``POST /v1/messages``), in
front of channels of every format.

To an ``anthropic`` channel the request passes through natively (see
relay/providers/anthropic.py). To any other, it becomes a hub chat request
(``to_hub``) and the answer comes back as an Anthropic message
(``from_hub``) or as Anthropic's full event sequence (``EventEncoder``:
``message_start`` first, content blocks, usage in ``message_delta``,
``message_stop``); errors in Anthropic's shape with its status codes.
"""

from __future__ import annotations

import os

import orjson

from relay.metering import Usage, usage_from_openai
from relay.providers.base import ConversionError, Json

# Anthropic's error type for each status it uses (others: by class).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Top-level fields with no hub equivalent that change nothing when dropped.
DROPPED = frozenset({"top_k", "service_tier", "container", "context_management", "thinking", "mcp_servers"})


def error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message}})


def _message_id() -> str:
    return "msg_" + os.urandom(12).hex()


# --- requests -------------------------------------------------------------------


def _text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text") or ""))
            elif isinstance(block, dict) and block.get("type") == "image":
                raise ConversionError(f"{where}: images in tool results are not supported for this model", where)
        return "\n".join(texts)
    return ""


def _image_part(block: Json, where: str) -> Json:
    source = block.get("source")
    if not isinstance(source, dict):
        raise ConversionError(f"{where}.source is required", where)
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise ConversionError(f"{where}.source: only base64 and url images are supported for this model", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _convert_message(message: object, i: int) -> list[Json]:
    """One Anthropic message as hub messages (tool results are their own)."""
    where = f"messages.{i}"
    if not isinstance(message, dict):
        raise ConversionError(f"{where}: Input should be a valid dictionary", where)
    role = message.get("role")
    content = message.get("content")
    if role not in ("user", "assistant"):
        raise ConversionError(f"{where}.role: Input should be 'user' or 'assistant'", where)
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise ConversionError(f"{where}.content: Input should be a valid string or list", where)
    parts: list[Json] = []
    calls: list[Json] = []
    results: list[Json] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        here = f"{where}.content.{j}"
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text") or "")})
        elif kind == "image":
            parts.append(_image_part(block, here))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind == "tool_result":
            text = _text(block.get("content"), here)
            if block.get("is_error"):
                text = f"Error: {text}"
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # signed for Anthropic alone; other models neither need nor take them
        else:
            raise ConversionError(f"{here}: content blocks of type {kind!r} are not supported for this model", here)
    out: list[Json] = list(results)
    if role == "assistant":
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        if text or calls:
            message_out: Json = {"role": "assistant", "content": text or None}
            if calls:
                message_out["tool_calls"] = calls
            out.append(message_out)
    elif parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if only_text else parts})
    return out


def _tool_choice(choice: object) -> tuple[object, bool | None]:
    """(hub tool_choice, parallel_tool_calls) of Anthropic's tool_choice."""
    if not isinstance(choice, dict):
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise ConversionError("tool_choice: Input tag does not match any of the expected tags", "tool_choice")


def to_hub(payload: Json) -> Json:
    """An Anthropic Messages request as a hub chat request."""
    messages: list[Json] = []
    system = payload.get("system")
    if system:
        messages.append({"role": "system", "content": _text(system, "system")})
    raw_messages = payload.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ConversionError("messages: Field required", "messages")
    for i, message in enumerate(raw_messages):
        messages.extend(_convert_message(message, i))
    hub: Json = {"model": payload.get("model"), "messages": messages}
    if isinstance(payload.get("max_tokens"), int):
        hub["max_tokens"] = payload["max_tokens"]
    for name in ("temperature", "top_p"):
        if isinstance(payload.get(name), int | float):
            hub[name] = payload[name]
    if isinstance(payload.get("stop_sequences"), list) and payload["stop_sequences"]:
        hub["stop"] = payload["stop_sequences"]
    tools = payload.get("tools")
    if isinstance(tools, list) and tools:
        converted = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
                raise ConversionError(f"tools.{i}: server tools are not supported for this model", "tools")
            function: Json = {"name": tool.get("name"), "parameters": tool.get("input_schema") or {"type": "object"}}
            if tool.get("description"):
                function["description"] = tool["description"]
            converted.append({"type": "function", "function": function})
        hub["tools"] = converted
        choice, parallel = _tool_choice(payload.get("tool_choice"))
        if choice is not None:
            hub["tool_choice"] = choice
        if parallel is not None:
            hub["parallel_tool_calls"] = parallel
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        hub["user"] = metadata["user_id"]
    if payload.get("stream") is True:
        hub["stream"] = True
    return hub


# --- answers --------------------------------------------------------------------


def anthropic_usage(usage: Usage | None) -> Json:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _hub_usage(hub: Json) -> Usage | None:
    return usage_from_openai(hub.get("usage"))


def _tool_input(arguments: object) -> Json:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {"arguments": arguments}  # a model's malformed JSON, kept rather than lost
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def from_hub(hub: Json, model: str) -> bytes:
    choices = hub.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    blocks: list[Json] = []
    if message.get("reasoning_content"):
        blocks.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
    if message.get("content"):
        blocks.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _tool_input(function.get("arguments")),
            }
        )
    if not blocks:
        blocks.append({"type": "text", "text": ""})
    body = {
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(_hub_usage(hub)),
    }
    return orjson.dumps(body)


def _event(kind: str, payload: Json) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


class EventEncoder:
    """Hub chunks as Anthropic's event stream: ``message_start`` before
    anything else, one content block at a time (thinking, text, each tool
    call), ``message_delta`` with the stop reason and usage, ``message_stop``."""

    __slots__ = ("block", "index", "model", "started", "stop_reason", "tools", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block: str | None = None  # the open block's kind
        self.index = -1  # the open block's index
        self.tools: dict[int, int] = {}  # hub tool call index → block index
        self.stop_reason = "end_turn"
        self.usage: Usage | None = None

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        message: Json = {
            "id": _message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"message": message}) + _event("ping", {})

    def _close(self) -> bytes:
        if self.block is None:
            return b""
        self.block = None
        return _event("content_block_stop", {"index": self.index})

    def _open(self, kind: str, block: Json) -> bytes:
        out = self._close()
        self.index += 1
        self.block = kind
        return out + _event("content_block_start", {"index": self.index, "content_block": block})

    def encode(self, chunk: Json) -> bytes:
        out = self._start()
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                if self.block != "thinking":
                    out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out += _event(
                    "content_block_delta",
                    {"index": self.index, "delta": {"type": "thinking_delta", "thinking": reasoning}},
                )
            if delta.get("content"):
                if self.block != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out += _event(
                    "content_block_delta",
                    {"index": self.index, "delta": {"type": "text_delta", "text": delta["content"]}},
                )
            for call in delta.get("tool_calls") or ():
                position = call.get("index", 0)
                function = call.get("function") or {}
                if position not in self.tools:
                    out += self._open(
                        "tool_use",
                        {
                            "type": "tool_use",
                            "id": call.get("id") or f"toolu_{position}",
                            "name": function.get("name") or "",
                            "input": {},
                        },
                    )
                    self.tools[position] = self.index
                if function.get("arguments") and self.tools[position] == self.index:
                    out += _event(
                        "content_block_delta",
                        {
                            "index": self.index,
                            "delta": {"type": "input_json_delta", "partial_json": function["arguments"]},
                        },
                    )
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def end(self, usage: Usage | None) -> bytes:
        out = self._start() + self._close()
        delta = {"delta": {"stop_reason": self.stop_reason, "stop_sequence": None}, "usage": anthropic_usage(usage)}
        return out + _event("message_delta", delta) + _event("message_stop", {})

    def error_tail(self, message: str, request_id: str) -> bytes:
        text = f"Upstream stream failed: {message} (request id: {request_id})"
        return self._start() + _event("error", {"error": {"type": "api_error", "message": text}})


class AnthropicInbound:
    format = "anthropic"

    def to_hub(self, payload: Json) -> Json:
        return to_hub(payload)

    def from_hub(self, hub: Json, model: str) -> bytes:
        return from_hub(hub, model)

    def hub_encoder(self, model: str, client_wants_usage: bool) -> EventEncoder:
        return EventEncoder(model)

    def error_body(self, status: int, message: str, type: str, code: str | None, param: str | None) -> bytes:
        return error_body(status, message)


INBOUND = AnthropicInbound()
