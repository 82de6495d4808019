"""Anthropic's Messages API as an upstream.

Natively (an Anthropic-format client): the body passes through as bytes,
changed only for a model mapping, with the client's ``anthropic-version``
and ``anthropic-beta`` headers; thinking blocks and their signatures, cache
control and every field the gateway does not know travel untouched.

From the hub (an OpenAI-format client): system messages lifted to the
top-level ``system``; ``max_tokens`` always sent; text and images (data
URLs, and http(s) URLs the relay fetched); tools, tool calls and tool
results as ``tool_use`` / ``tool_result`` blocks; stop sequences; and back:
``stop_reason`` as ``finish_reason``, thinking as ``reasoning_content``,
streamed tool input as ``tool_calls`` argument deltas, Anthropic's usage
(cache writes and reads) as the hub usage chunk.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import orjson

from relay import keystate
from relay.errors import mask_secrets
from relay.keystate import Verdict
from relay.metering import Usage
from relay.providers.base import ConversionError, Image, Json, UpstreamRequest
from relay.providers.openai import DELIVERED_KEEP, mask_event
from relay.snapshot import ChannelSnap

API_VERSION = "2023-06-01"
# Anthropic's reasons, as OpenAI's finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# OpenAI's reasoning_effort as a thinking budget (Anthropic's minimum is 1,024).
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
MIN_THINKING_BUDGET = 1024
# Hub fields with no Anthropic equivalent that change nothing when dropped.
IGNORED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "n",
        "logprobs",
        "top_logprobs",
        "seed",
        "service_tier",
        "store",
        "parallel_tool_calls",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "modalities",
        "prediction",
        "metadata",
        "web_search_options",
        "verbosity",
        "safety_identifier",
        "prompt_cache_key",
    }
)
# Anthropic's credit-balance refusal is a 400 invalid_request_error whose
# message begins so; an error a request causes never begins with it (those
# begin with the field at fault), so this is about the key's account.
CREDIT_PREFIX = "your credit balance is too low"


def upstream_url(channel: ChannelSnap, endpoint: str) -> str:
    base = channel.base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return f"{base}/v1/{endpoint}"


def headers(secret: str, version: str = API_VERSION, beta: str | None = None) -> dict[str, str]:
    out = {"x-api-key": secret, "anthropic-version": version, "content-type": "application/json"}
    if beta:
        out["anthropic-beta"] = beta
    return out


def usage_from_anthropic(data: object) -> Usage | None:
    """Usage from Anthropic's counts. Its ``input_tokens`` leaves out what
    was written to and read from the cache; the prompt is all three, the
    reads billed at the cached-input price and the writes at the cache-write
    price."""
    if not isinstance(data, dict):
        return None
    counts = []
    for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = data.get(name) or 0
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 40:
            return None
        counts.append(value)
    uncached, output, written, read = counts
    return Usage(
        prompt_tokens=uncached + written + read,
        completion_tokens=output,
        cached_tokens=read,
        cache_write_tokens=written,
    )


def hub_usage(usage: Usage) -> Json:
    """Anthropic's counts as OpenAI's usage object (prompt includes the cache)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": usage.cache_write_tokens},
    }


# --- requests -------------------------------------------------------------------


def _text_of(content: object, where: str) -> str:
    """The text of a hub message's content (a string or text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise ConversionError(f"{where}: only text parts are supported here for Anthropic models", where)
        return "\n".join(texts)
    raise ConversionError(f"{where}: content must be a string or a list of parts", where)


def data_url_image(url: str) -> Image | None:
    """``data:image/png;base64,…`` as an Image; None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    if not sep or encoding != "base64" or not media_type.startswith("image/"):
        raise ConversionError("image_url: a data URL must be data:image/…;base64,…", "messages")
    return Image(media_type, data)


def _image_url(part: Json) -> str:
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise ConversionError("image_url.url is required", "messages")
    return url


def _user_blocks(content: object, where: str, images: Mapping[str, Image]) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ConversionError(f"{where}: content must be a string or a list of parts", where)
    blocks: list[Json] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            block: Json = {"type": "text", "text": part["text"]}
            if isinstance(part.get("cache_control"), dict):
                block["cache_control"] = part["cache_control"]  # as LiteLLM's clients mark a cache breakpoint
            blocks.append(block)
        elif kind == "image_url":
            url = _image_url(part)
            image = data_url_image(url) or images.get(url)
            if image is None:
                raise ConversionError(f"{where}: the image {url[:80]!r} was not fetched", where)
            blocks.append(
                {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": image.data_b64}}
            )
        else:
            raise ConversionError(
                f"{where}: content parts of type {kind!r} are not supported for Anthropic models", where
            )
    return blocks


def _tool_use_blocks(calls: object, where: str) -> list[Json]:
    if not isinstance(calls, list):
        raise ConversionError(f"{where}.tool_calls must be a list", where)
    blocks = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ConversionError(f"{where}.tool_calls: each needs a function name", where)
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise ConversionError(f"{where}.tool_calls: arguments must be a JSON object", where) from None
        if not isinstance(parsed, dict):
            raise ConversionError(f"{where}.tool_calls: arguments must be a JSON object", where)
        blocks.append({"type": "tool_use", "id": call.get("id") or "", "name": function["name"], "input": parsed})
    return blocks


def _messages(hub: Json, images: Mapping[str, Image]) -> tuple[list[Json], list[Json]]:
    """(system blocks, messages): system and developer messages lifted out,
    tool results as user turns, consecutive turns of one role merged."""
    messages = hub.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ConversionError("messages: at least one message is required", "messages")
    system: list[Json] = []
    out: list[Json] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ConversionError(f"{where} must be an object", where)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            if isinstance(content, list):
                system += _user_blocks(content, where, images)
            else:
                system.append({"type": "text", "text": _text_of(content, where)})
            continue
        if role == "user":
            blocks = _user_blocks(content, where, images)
        elif role == "assistant":
            text = _text_of(content, where)
            blocks = [{"type": "text", "text": text}] if text else []
            if message.get("tool_calls"):
                blocks += _tool_use_blocks(message["tool_calls"], where)
            if not blocks:
                continue  # an empty assistant turn says nothing
        elif role in ("tool", "function"):
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id") or message.get("name") or "",
                    "content": _text_of(content, where),
                }
            ]
        else:
            raise ConversionError(f"{where}.role {role!r} is not one of system, user, assistant, tool", where)
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    if not out:
        raise ConversionError("messages: there must be a user message besides system messages", "messages")
    return system, out


def _tools(hub: Json) -> list[Json] | None:
    tools = hub.get("tools")
    if not tools:
        return None
    if not isinstance(tools, list):
        raise ConversionError("tools must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ConversionError(f"tools[{i}]: only function tools are supported for Anthropic models", "tools")
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        converted: Json = {"name": function["name"], "input_schema": schema}
        if function.get("description"):
            converted["description"] = function["description"]
        out.append(converted)
    return out


def _tool_choice(hub: Json) -> Json | None:
    choice = hub.get("tool_choice")
    parallel = hub.get("parallel_tool_calls")
    converted: Json | None
    if choice is None:
        converted = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        converted = {"type": "auto"}
    elif choice == "required":
        converted = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        converted = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise ConversionError("tool_choice must be auto, required, none or a function", "tool_choice")
    if converted is not None and parallel is False:
        converted["disable_parallel_tool_use"] = True
    return converted


def _cap(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def messages_body(channel: ChannelSnap, hub: Json, model: str, stream: bool, images: Mapping[str, Image]) -> Json:
    """A hub chat request as an Anthropic Messages request."""
    unsupported = hub.get("n")
    if isinstance(unsupported, int) and unsupported > 1:
        raise ConversionError("n: Anthropic models answer one choice per request", "n")
    response_format = hub.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise ConversionError("response_format: JSON modes are not supported for Anthropic models", "response_format")
    system, messages = _messages(hub, images)
    max_tokens = _cap(hub.get("max_completion_tokens")) or _cap(hub.get("max_tokens")) or channel.max_tokens
    body: Json = {"model": channel.upstream_model(model), "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = system
    if stream:
        body["stream"] = True
    for name in ("temperature", "top_p"):
        value = hub.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            body[name] = min(float(value), 1.0) if name == "temperature" else value
    stop = hub.get("stop")
    if isinstance(stop, str):
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        body["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    tools = _tools(hub)
    if tools:
        body["tools"] = tools
    choice = _tool_choice(hub)
    if choice is not None and (tools or choice["type"] == "none"):
        body["tool_choice"] = choice
    if isinstance(hub.get("user"), str):
        body["metadata"] = {"user_id": hub["user"]}
    thinking = hub.get("thinking")  # Anthropic's own field, as some OpenAI-format clients send it
    effort = hub.get("reasoning_effort")
    if isinstance(thinking, dict):
        body["thinking"] = thinking
    elif isinstance(effort, str) and effort in THINKING_BUDGETS:
        # The budget stays below max_tokens (what the hold covers); too small a cap: no thinking.
        budget = min(THINKING_BUDGETS[effort], max_tokens - 1)
        if budget >= MIN_THINKING_BUDGET:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if "thinking" in body:
        body.pop("temperature", None)  # thinking takes no temperature
        body.pop("top_p", None)
    return body


# --- answers --------------------------------------------------------------------


def _hub_message(blocks: object) -> Json:
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[Json] = []
    for block in blocks if isinstance(blocks, list) else ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(str(block.get("text") or ""))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input")).decode()},
                }
            )
    message: Json = {"role": "assistant", "content": "".join(text) if text or not calls else None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


class EventDecoder:
    """Anthropic's stream events as hub chunks: text and thinking deltas as
    content and reasoning_content, tool_use blocks as tool_calls (the
    arguments as input_json_delta pieces come), message_delta's stop_reason
    as finish_reason, and, after message_stop, the usage chunk."""

    __slots__ = ("_counts", "created", "done", "error", "id", "model", "tools", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = "chatcmpl-anthropic"
        self.created = int(time.time())
        self.usage: Usage | None = None
        self.done = False
        self.error: str | None = None
        self.tools: dict[int, int] = {}  # content block index → tool call index
        self._counts: Json = {}

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> Json:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def feed(self, event: bytes) -> list[Json]:
        at = event.find(b"data:")
        if at < 0:
            return []
        try:
            data = orjson.loads(event[at + 5 :])
        except orjson.JSONDecodeError:
            return []
        if not isinstance(data, dict):
            return []
        kind = data.get("type")
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if dtype == "thinking_delta":
                return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
            if dtype == "input_json_delta":
                index = self.tools.get(data.get("index", -1))
                if index is None or not delta.get("partial_json"):
                    return []
                return [
                    self._chunk({"tool_calls": [{"index": index, "function": {"arguments": delta["partial_json"]}}]})
                ]
            return []  # signature_delta, citations_delta: nothing an OpenAI client reads
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tools[data.get("index", len(self.tools))] = len(self.tools)
                call = {
                    "index": index,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "message_start":
            message = data.get("message") or {}
            if isinstance(message.get("id"), str):
                self.id = message["id"]
            self._take_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            self._take_usage(data.get("usage"))
            reason = (data.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, FINISH_REASONS.get(reason, "stop"))] if reason else []
        if kind == "message_stop":
            self.done = True
            if self.usage is None:
                return []
            return [
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": hub_usage(self.usage),
                }
            ]
        if kind == "error":
            error = data.get("error") or {}
            self.error = mask_secrets(f"{error.get('type', 'error')}: {error.get('message', '')}")
        return []  # ping, content_block_stop, and event types added later

    def _take_usage(self, usage: object) -> None:
        """message_start carries the input counts, message_delta the output
        so far (cumulative), sometimes the input counts again."""
        if isinstance(usage, dict):
            self._counts.update({k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)})
            self.usage = usage_from_anthropic(self._counts) or self.usage


class PassThrough:
    """An Anthropic stream passed through to an Anthropic client: usage from
    message_start and message_delta, the end at message_stop, keys masked in
    error events. An upstream error event ends the stream as it is."""

    __slots__ = ("_counts", "delivered", "done", "error", "renames", "secret", "usage")

    def __init__(self, secret: str, renames: tuple[tuple[bytes, bytes], ...]) -> None:
        self.secret = secret.encode()
        self.renames = renames
        self.usage: Usage | None = None
        self.done = False
        self.error: str | None = None
        self.delivered = bytearray()
        self._counts: Json = {}

    def take(self, event: bytes) -> bytes | None:
        if event.startswith(b"event: error") or (self.secret and self.secret in event):
            event = mask_event(event, self.secret)
        for upstream_name, client_name in self.renames:
            event = event.replace(upstream_name, client_name)
        head = event[:40]
        if b"message_start" in head or b"message_delta" in head:
            try:
                data = orjson.loads(event[event.index(b"data:") + 5 :])
            except (orjson.JSONDecodeError, ValueError):
                data = None
            if isinstance(data, dict):
                usage = (data.get("message") or {}).get("usage") if "message" in data else data.get("usage")
                if isinstance(usage, dict):
                    self._counts.update(
                        {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
                    )
                    self.usage = usage_from_anthropic(self._counts) or self.usage
        elif b"message_stop" in head or event.startswith(b"event: error"):
            self.done = True  # an error event is the stream's own end
        elif b"content_block_delta" in head and len(self.delivered) < DELIVERED_KEEP:
            self.delivered += event
        return event

    def end(self) -> bytes:
        return b""

    def error_tail(self, message: str, request_id: str) -> bytes:
        return error_event(message, request_id)

    def delivered_text(self) -> str:
        parts = []
        for event in bytes(self.delivered).split(b"\n\n"):
            at = event.find(b"data:")
            try:
                delta = orjson.loads(event[at + 5 :]).get("delta") or {}
            except (orjson.JSONDecodeError, AttributeError):
                continue
            parts.append(str(delta.get("text") or delta.get("thinking") or delta.get("partial_json") or ""))
        return "".join(parts)


def error_event(message: str, request_id: str) -> bytes:
    """The tail of a broken Anthropic-format stream."""
    body = {
        "type": "error",
        "error": {"type": "api_error", "message": f"Upstream stream failed: {message} (request id: {request_id})"},
    }
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


class AnthropicProvider:
    format = "anthropic"

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
        body = raw
        upstream_model = channel.upstream_model(model)
        if payload is not None and upstream_model != model:
            body = orjson.dumps({**payload, "model": upstream_model})
        version = client_headers.get("anthropic-version") or API_VERSION
        return UpstreamRequest(
            upstream_url(channel, endpoint), headers(secret, version, client_headers.get("anthropic-beta")), body
        )

    def hub_request(
        self, channel: ChannelSnap, secret: str, hub: Json, model: str, stream: bool, images: Mapping[str, Image]
    ) -> UpstreamRequest:
        body = messages_body(channel, hub, model, stream, images)
        return UpstreamRequest(upstream_url(channel, "messages"), headers(secret), orjson.dumps(body))

    def remote_images(self, hub: Json) -> list[str]:
        urls = []
        for message in hub.get("messages") or ():
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        url = _image_url(part)
                        if url.startswith(("http://", "https://")):
                            urls.append(url)
        return urls

    def native_usage(self, body: bytes) -> Usage | None:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return usage_from_anthropic(parsed.get("usage")) if isinstance(parsed, dict) else None

    def native_stream(
        self, client_wants_usage: bool, secret: str, renames: tuple[tuple[bytes, bytes], ...]
    ) -> PassThrough:
        return PassThrough(secret, renames)

    def hub_response(self, body: bytes, model: str) -> tuple[Json, Usage | None]:
        parsed = orjson.loads(body)
        if not isinstance(parsed, dict) or parsed.get("type") != "message":
            raise ValueError("not an Anthropic message")
        usage = usage_from_anthropic(parsed.get("usage"))
        hub: Json = {
            "id": parsed.get("id") or "chatcmpl-anthropic",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": _hub_message(parsed.get("content")),
                    "logprobs": None,
                    "finish_reason": FINISH_REASONS.get(parsed.get("stop_reason") or "end_turn", "stop"),
                }
            ],
        }
        if usage is not None:
            hub["usage"] = hub_usage(usage)
        return hub, usage

    def hub_decoder(self, model: str) -> EventDecoder:
        return EventDecoder(model)

    def judge(
        self, status: int, body: bytes, headers: Mapping[str, str], secret: str, phrases: tuple[str, ...]
    ) -> Verdict:
        verdict = keystate.judge(status, body, headers, secret, phrases)
        if verdict.fault == "request" and status == 400 and verdict.message.lower().startswith(CREDIT_PREFIX):
            return Verdict("key", "insufficient_quota", verdict.message)
        return verdict

    def probe_request(self, channel: ChannelSnap, secret: str, model: str) -> UpstreamRequest:
        body = {
            "model": channel.upstream_model(model),
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "hi"}],
        }
        return UpstreamRequest(upstream_url(channel, "messages"), headers(secret), orjson.dumps(body))


PROVIDER = AnthropicProvider()
