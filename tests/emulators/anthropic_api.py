"""A local HTTP emulator of Anthropic's Messages API, for tests.

Written from Anthropic's public API reference (Messages, streaming, errors,
token counting, extended thinking, tool use, prompt caching) on the shared
machinery of tests/emulators/base.py. It checks what it receives as the
real API does and answers with realistic bodies, event streams and errors.

What it checks (400 ``invalid_request_error`` unless said otherwise)
    the API key (``x-api-key``, or ``Authorization: Bearer`` as the pinned
    SDK sends it; 401 ``authentication_error`` when missing or unknown),
    ``anthropic-version``
    (required, one of VERSIONS), JSON body, top-level fields (unknown ones
    are refused: "Extra inputs are not permitted"), ``model`` (one of
    ``models``, else 404 ``not_found_error``), ``max_tokens`` (required,
    positive integer), ``messages`` (non-empty; roles ``user`` and
    ``assistant`` only: a ``system`` role is refused, system prompts go in the
    top-level ``system``), content blocks (text, image with base64 or url
    source and a supported media type, tool_use, tool_result naming an
    earlier tool_use, thinking with the signature this emulator issued,
    byte for byte, redacted_thinking), ``tools`` (name and input_schema),
    ``tool_choice``, ``thinking`` (budget at least 1024 and below
    max_tokens), ``temperature`` (0 to 1), ``stop_sequences``.

Deterministic content
    The answer's text is the words ``"Hello from the Anthropic emulator"``
    (continued ``" word5"``, ...), ``reply_words`` of them (5), one word one
    output token and one streamed ``text_delta``; ``max_tokens`` cuts it short
    (``stop_reason: "max_tokens"``), a stop sequence equal to a word ends it
    there (``"stop_sequence"``). With ``thinking`` enabled a thinking block
    ("Let me think about this.", 5 tokens) comes first, with a signature. With
    ``tools`` (and ``tool_choice`` not ``none``) and a last user turn that
    holds no ``tool_result``, the answer calls the tools instead: the first
    tool, and the second too unless ``disable_parallel_tool_use`` (or only one
    tool), each input built from its schema's required properties.

Token counts (so tests can predict usage)
    Input: for every message and the system prompt, the whitespace-separated
    words of its text, 3 per message, the words of the tools' JSON, and 85
    per image. Prompt caching: the prefix up to and including the last block
    with ``cache_control`` is cached per key; its first request reports those
    tokens as ``cache_creation_input_tokens``, later ones as
    ``cache_read_input_tokens``; ``input_tokens`` is the rest. Output: one per
    word of text or thinking, 10 per tool_use block.

Per-key behaviour (``set_key_behaviour``)
    ``ok``; ``invalid`` (401 authentication_error); ``permission`` (403
    permission_error); ``rate_limited`` (429 rate_limit_error with
    ``retry-after: kw.get("retry_after", 30)``); ``overloaded`` (529
    overloaded_error); ``server_error`` (500 api_error); ``credit`` (400
    invalid_request_error "Your credit balance is too low ..."); ``billing``
    (402 billing_error); ``stream_error`` (a 200 stream that sends
    ``kw.get("chunks", 2)`` words, then an ``overloaded_error`` error event);
    ``slow``; ``die_mid_stream``; and every fault of tests/emulators/faults.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from .base import APIError, BodyKind, Call, EmulatorBase, Handler, random_id
from .schemas import sample

__all__ = ["BEHAVIOURS", "THINKING_TEXT", "AnthropicEmulator", "reply_text"]

BEHAVIOURS = frozenset(
    {
        "ok",
        "invalid",
        "permission",
        "rate_limited",
        "overloaded",
        "server_error",
        "credit",
        "billing",
        "stream_error",
        "slow",
        "die_mid_stream",
    }
)
# The API versions the reference names, and the one the anthropic SDK pinned in requirements-dev.txt sends.
VERSIONS = frozenset({"2023-06-01", "2023-01-01", "2026-10-21"})
REPLY_WORDS = ("Hello", " from", " the", " Anthropic", " emulator")
THINKING_TEXT = "Let me think about this."
IMAGE_TOKENS = 85
TOOL_USE_TOKENS = 10
PER_MESSAGE_TOKENS = 3
MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_config",
    }
)
COUNT_TOP_LEVEL = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


# A 1x1 transparent PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
PNG_B64 = base64.b64encode(PNG).decode()


def reply_text(n: int = len(REPLY_WORDS)) -> str:
    return "".join(_words(n))


def _words(n: int) -> list[str]:
    return [REPLY_WORDS[i] if i < len(REPLY_WORDS) else f" word{i}" for i in range(n)]


def _invalid(message: str) -> APIError:
    return APIError(400, message, type="invalid_request_error")


class AnthropicEmulator(EmulatorBase):
    NAME = "anthropic"
    BEHAVIOURS = BEHAVIOURS
    API_PREFIX = ""  # the SDK's base_url is the host; paths start with /v1

    def __init__(
        self,
        *,
        valid_keys: Iterable[str] = ("sk-ant-upstream-good",),
        models: Iterable[str] = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7"),
    ) -> None:
        super().__init__(valid_keys=valid_keys)
        self._initial_models = tuple(models)
        self.models: list[str] = list(self._initial_models)
        self.reply_words = len(REPLY_WORDS)
        self._signing_key = secrets.token_bytes(32)
        self._cached: set[tuple[str, str]] = set()  # (key, prefix digest)
        self.image_requests = 0

    def reset(self) -> None:
        self.image_requests = 0
        self.models = list(self._initial_models)
        self.reply_words = len(REPLY_WORDS)
        self._cached.clear()
        super().reset()

    def routes(self) -> list[tuple[str, str, Handler, BodyKind]]:
        return [
            ("POST", "/v1/messages", self._messages, "json"),
            ("POST", "/v1/messages/count_tokens", self._count_tokens, "json"),
        ]

    def add_extra_routes(self, app: web.Application) -> None:
        # Images for clients to name by URL (not Anthropic's API: no auth, not recorded).
        app.router.add_get("/_emulator/image.png", self._serve_png)
        app.router.add_get("/_emulator/big.png", self._serve_big)
        app.router.add_get("/_emulator/redirect", self._redirect)
        app.router.add_route("*", "/{tail:.*}", self._endpoint(self._not_found, "none"))

    async def _serve_png(self, request: web.Request) -> web.StreamResponse:
        self.image_requests += 1
        return web.Response(body=PNG, content_type="image/png")

    async def _serve_big(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", 6 * 1024 * 1024))
        return web.Response(body=PNG + b"\0" * size, content_type="image/png")

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["to"])

    @property
    def image_url(self) -> str:
        """An http URL of a small PNG this emulator serves."""
        return f"{self.root_url}/_emulator/image.png"

    # ---------------------------------------------------------------- the provider's pieces

    def _key_of(self, request: web.Request) -> str | None:
        # x-api-key, or (as the anthropic SDK pinned in requirements-dev.txt sends an API key) a Bearer token.
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        return request.headers.get("x-api-key") or (bearer.strip() if scheme.lower() == "bearer" else "") or None

    def _common_headers(self, call: Call) -> dict[str, str]:
        return {
            "request-id": call.request_id,
            "anthropic-organization-id": "org-emulator",
            "anthropic-ratelimit-requests-limit": "4000",
            "anthropic-ratelimit-requests-remaining": "3999",
        }

    def error_payload(self, error: APIError) -> dict[str, Any]:
        kind = error.type if error.type in ERROR_TYPES.values() else ERROR_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}, "request_id": random_id("req_", 24)}

    def invalid_json_error(self) -> APIError:
        return _invalid("There was an issue with the format of your request: the body is not valid JSON.")

    def _authorize(self, call: Call) -> None:
        headers = call.record["headers"]
        key = call.record["key"]
        if key is None:
            raise APIError(401, "x-api-key header is required", type="authentication_error")
        behaviour = call.behaviour
        if behaviour == "invalid":
            raise APIError(401, "invalid x-api-key", type="authentication_error")
        version = headers.get("anthropic-version")
        if not version:
            raise _invalid("anthropic-version: header is required")
        if version not in VERSIONS:
            raise _invalid(f"anthropic-version: invalid version {version!r}")
        if behaviour == "permission":
            raise APIError(
                403, "Your API key does not have permission to use the specified resource.", type="permission_error"
            )
        if behaviour == "rate_limited":
            retry_after = call.options.get("retry_after", 30)
            raise APIError(
                429,
                "This request would exceed the rate limit for your organization of 50 requests per minute.",
                type="rate_limit_error",
                headers={"retry-after": str(retry_after), "anthropic-ratelimit-requests-remaining": "0"},
            )
        if behaviour == "overloaded":
            raise APIError(529, "Overloaded", type="overloaded_error")
        if behaviour == "server_error":
            raise APIError(500, "Internal server error", type="api_error")
        if behaviour == "credit":
            raise _invalid(
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
                "to upgrade or purchase credits."
            )
        if behaviour == "billing":
            raise APIError(402, "There is an issue with your billing or payment information.", type="billing_error")

    # ---------------------------------------------------------------- faults (tests/emulators/faults.py)

    def fault_event(self, call: Call, text: str) -> bytes:
        return _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        )

    def fault_stream_end(self, call: Call) -> bytes:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 1},
        }
        return _sse("message_delta", delta) + _sse("message_stop", {"type": "message_stop"})

    def fault_body(self, call: Call, text: str) -> bytes:
        model = call.body.get("model") if isinstance(call.body, dict) else None
        return json.dumps(
            self._message(
                model or "claude-sonnet-4-6",
                [{"type": "text", "text": text}],
                "end_turn",
                None,
                {"input_tokens": 10, "output_tokens": len(text.split())},
            ),
            indent=2,
        ).encode()

    def fault_error_event(self, call: Call, message: str) -> bytes:
        return _sse("error", {"type": "error", "error": {"type": "api_error", "message": message}})

    # ---------------------------------------------------------------- endpoints

    async def _not_found(self, request: web.Request, call: Call) -> web.StreamResponse:
        raise APIError(404, "Not Found", type="not_found_error")

    async def _count_tokens(self, request: web.Request, call: Call) -> web.StreamResponse:
        body = call.json
        self._check_fields(body, COUNT_TOP_LEVEL)
        self._check_model(body)
        self._check_messages(body)
        tokens, _ = self._input_tokens(body, "")
        return self._json_response(call, {"input_tokens": tokens})

    async def _messages(self, request: web.Request, call: Call) -> web.StreamResponse:
        body = call.json
        self._check_fields(body, TOP_LEVEL)
        model = self._check_model(body)
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise _invalid("max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise _invalid("max_tokens: Input should be a valid positive integer")
        self._check_messages(body)
        self._check_options(body, max_tokens)
        blocks, stop_reason, stop_sequence, output = self._answer(body, max_tokens)
        inputs, cache = self._input_tokens(body, call.record["key"] or "")
        usage = {"input_tokens": inputs, "output_tokens": output, **cache, "service_tier": "standard"}
        if body.get("stream") is True:
            return await self._stream(request, call, model, blocks, stop_reason, stop_sequence, usage)
        return self._json_response(call, self._message(model, blocks, stop_reason, stop_sequence, usage))

    # ---------------------------------------------------------------- validation

    @staticmethod
    def _check_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
        extra = sorted(set(body) - allowed)
        if extra:
            raise _invalid(f"{extra[0]}: Extra inputs are not permitted")

    def _check_model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("model: Field required")
        if model not in self.models:
            raise APIError(404, f"model: {model}", type="not_found_error")
        return model

    def _check_messages(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid(
                "messages: Field required" if messages is None else "messages: at least one message is required"
            )
        system = body.get("system")
        if system is not None and not isinstance(system, str):
            if not isinstance(system, list) or not all(isinstance(b, dict) and b.get("type") == "text" for b in system):
                raise _invalid("system: Input should be a valid string or a list of text blocks")
        tool_ids: set[str] = set()
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _invalid(f"messages.{i}: Input should be a valid dictionary")
            role = message.get("role")
            if role == "system":
                raise _invalid(
                    f'messages.{i}.role: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            content = message.get("content")
            if isinstance(content, str):
                if not content and i != len(messages) - 1:
                    raise _invalid(f"messages.{i}: all messages must have non-empty content")
                continue
            if not isinstance(content, list) or not content:
                raise _invalid(f"messages.{i}.content: Input should be a valid string or a non-empty list")
            for j, block in enumerate(content):
                self._check_block(block, f"messages.{i}.content.{j}", role, tool_ids)
        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list):
                raise _invalid("tools: Input should be a valid list")
            for i, tool in enumerate(tools):
                if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                    raise _invalid(f"tools.{i}.name: Field required")
                if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
                    raise _invalid(f"tools.{i}.input_schema: Field required")
        choice = body.get("tool_choice")
        if choice is not None:
            if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
                raise _invalid(
                    "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
                )
            if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
                raise _invalid("tool_choice.tool.name: Field required")

    def _check_block(self, block: Any, where: str, role: str, tool_ids: set[str]) -> None:
        if not isinstance(block, dict):
            raise _invalid(f"{where}: Input should be a valid dictionary")
        kind = block.get("type")
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise _invalid(f"{where}.text: Field required")
        elif kind == "image":
            source = block.get("source")
            if not isinstance(source, dict):
                raise _invalid(f"{where}.source: Field required")
            if source.get("type") == "base64":
                if source.get("media_type") not in MEDIA_TYPES:
                    raise _invalid(f"{where}.source.base64.media_type: Input should be one of {sorted(MEDIA_TYPES)}")
                try:
                    base64.b64decode(source.get("data") or "", validate=True)
                except ValueError:
                    raise _invalid(f"{where}.source.base64.data: invalid base64 data") from None
                if not source.get("data"):
                    raise _invalid(f"{where}.source.base64.data: Field required")
            elif source.get("type") == "url":
                if not isinstance(source.get("url"), str):
                    raise _invalid(f"{where}.source.url.url: Field required")
            else:
                raise _invalid(f"{where}.source: Input tag does not match any of the expected tags")
        elif kind == "tool_use":
            if role != "assistant":
                raise _invalid(f"{where}: tool_use blocks can only be in assistant messages")
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _invalid(f"{where}: tool_use blocks need an id and a name")
            if not isinstance(block.get("input"), dict):
                raise _invalid(f"{where}.input: Input should be a valid dictionary")
            tool_ids.add(block["id"])
        elif kind == "tool_result":
            if role != "user":
                raise _invalid(f"{where}: tool_result blocks can only be in user messages")
            if block.get("tool_use_id") not in tool_ids:
                raise _invalid(
                    f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {block.get('tool_use_id')}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                )
            content = block.get("content")
            if content is not None and not isinstance(content, str | list):
                raise _invalid(f"{where}.content: Input should be a valid string or list")
        elif kind == "thinking":
            if role != "assistant":
                raise _invalid(f"{where}: thinking blocks can only be in assistant messages")
            if block.get("signature") != self._sign(block.get("thinking") or ""):
                raise _invalid(f"{where}: Invalid `signature` in `thinking` block")
        elif kind == "redacted_thinking":
            if not isinstance(block.get("data"), str):
                raise _invalid(f"{where}.data: Field required")
        elif kind not in ("document", "search_result", "server_tool_use", "web_search_tool_result"):
            raise _invalid(f"{where}: Input tag {kind!r} found using 'type' does not match any of the expected tags")

    @staticmethod
    def _check_options(body: dict[str, Any], max_tokens: int) -> None:
        temperature = body.get("temperature")
        if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 1):
            raise _invalid("temperature: Input should be less than or equal to 1")
        stops = body.get("stop_sequences")
        if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
            raise _invalid("stop_sequences: Input should be a valid list of strings")
        thinking = body.get("thinking")
        if thinking is not None:
            if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
                raise _invalid("thinking: Input tag does not match any of the expected tags")
            if thinking["type"] == "enabled":
                budget = thinking.get("budget_tokens")
                if not isinstance(budget, int) or budget < 1024:
                    raise _invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
                if budget >= max_tokens:
                    raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")

    # ---------------------------------------------------------------- answers

    def _sign(self, thinking: str) -> str:
        return base64.b64encode(hmac.new(self._signing_key, thinking.encode(), hashlib.sha256).digest() * 4).decode()

    def _answer(self, body: dict[str, Any], max_tokens: int) -> tuple[list[dict[str, Any]], str, str | None, int]:
        blocks: list[dict[str, Any]] = []
        used = 0
        thinking = body.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
            blocks.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": self._sign(THINKING_TEXT)})
            used += len(THINKING_TEXT.split())
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        last = body["messages"][-1]
        answered = isinstance(last.get("content"), list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"]
        )
        if tools and choice.get("type") != "none" and last.get("role") == "user" and not answered:
            chosen = (
                [t for t in tools if t.get("name") == choice.get("name")] if choice.get("type") == "tool" else tools
            )
            count = 1 if choice.get("disable_parallel_tool_use") or len(chosen) < 2 else 2
            for tool in chosen[:count]:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": random_id("toolu_01", 22),
                        "name": tool["name"],
                        "input": sample(tool.get("input_schema")),
                    }
                )
                used += TOOL_USE_TOKENS
            return blocks, "tool_use", None, used
        words = _words(self.reply_words)
        room = max(max_tokens - used, 0)
        stop_reason, stop_sequence = "end_turn", None
        stops = body.get("stop_sequences") or []
        for i, word in enumerate(words):
            if word.strip() in stops:
                words, stop_reason, stop_sequence = words[:i], "stop_sequence", word.strip()
                break
        if len(words) > room:
            words, stop_reason, stop_sequence = words[:room], "max_tokens", None
        blocks.append({"type": "text", "text": "".join(words)})
        return blocks, stop_reason, stop_sequence, used + len(words)

    def _input_tokens(self, body: dict[str, Any], key: str) -> tuple[int, dict[str, int]]:
        """(uncached input tokens, cache counts) of a request; see the module docstring."""
        units: list[tuple[int, bool]] = []  # (tokens, carries cache_control) in prompt order
        tools = body.get("tools")
        if tools:
            units.append(
                (len(json.dumps(tools).split()), any(isinstance(t, dict) and t.get("cache_control") for t in tools))
            )
        system = body.get("system")
        if isinstance(system, str):
            units.append((len(system.split()) + PER_MESSAGE_TOKENS, False))
        elif isinstance(system, list):
            for block in system:
                units.append((len(str(block.get("text", "")).split()), bool(block.get("cache_control"))))
            units.append((PER_MESSAGE_TOKENS, False))
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                units.append((len(content.split()) + PER_MESSAGE_TOKENS, False))
                continue
            for block in content:
                units.append((self._block_tokens(block), bool(block.get("cache_control"))))
            units.append((PER_MESSAGE_TOKENS, False))
        total = sum(t for t, _ in units)
        marks = [i for i, (_, cached) in enumerate(units) if cached]
        if not marks:
            return total, {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        prefix = sum(t for t, _ in units[: marks[-1] + 1])
        digest = hashlib.sha256(
            json.dumps([body.get("tools"), body.get("system"), body.get("messages")], sort_keys=True).encode()
        ).hexdigest()
        # The cache is keyed by the prefix's own tokens; the whole request is a fair stand-in here.
        seen = (key, digest) in self._cached
        self._cached.add((key, digest))
        cache = {
            "cache_creation_input_tokens": 0 if seen else prefix,
            "cache_read_input_tokens": prefix if seen else 0,
        }
        return total - prefix, cache

    @staticmethod
    def _block_tokens(block: dict[str, Any]) -> int:
        kind = block.get("type")
        if kind == "text":
            return len(str(block.get("text", "")).split())
        if kind == "image":
            return IMAGE_TOKENS
        if kind == "tool_use":
            return len(json.dumps(block.get("input")).split()) + 3
        if kind == "tool_result":
            content = block.get("content")
            if isinstance(content, list):
                return sum(AnthropicEmulator._block_tokens(b) for b in content if isinstance(b, dict))
            return len(str(content or "").split())
        if kind == "thinking":
            return len(str(block.get("thinking", "")).split())
        return 1

    @staticmethod
    def _message(
        model: str,
        blocks: list[dict[str, Any]],
        stop_reason: str | None,
        stop_sequence: str | None,
        usage: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "id": random_id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }

    async def _stream(
        self,
        request: web.Request,
        call: Call,
        model: str,
        blocks: list[dict[str, Any]],
        stop_reason: str,
        stop_sequence: str | None,
        usage: dict[str, Any],
    ) -> web.StreamResponse:
        headers = self._common_headers(call)
        headers.update({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        dies = call.behaviour == "die_mid_stream"
        death_at = int(call.options.get("chunks_before_death", 2)) if dies else None
        fails_at = int(call.options.get("chunks", 2)) if call.behaviour == "stream_error" else None
        chunk_delay = float(call.options.get("chunk_delay") or 0) if call.behaviour == "slow" else 0.0

        async def send(kind: str, payload: dict[str, Any]) -> None:
            await response.write(_sse(kind, {"type": kind, **payload}))

        start = self._message(model, [], None, None, {**usage, "output_tokens": 1})
        await send("message_start", {"message": start})
        sent = 0
        for index, block in enumerate(blocks):
            kind = block["type"]
            if kind == "text":
                await send("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                if index == 0:
                    await send("ping", {})
                for word in _split_words(block["text"]):
                    if death_at is not None and sent >= death_at:
                        return self._abort(request, response)
                    if fails_at is not None and sent >= fails_at:
                        await send("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
                        await response.write_eof()
                        return response
                    await send("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": word}})
                    if chunk_delay:
                        await asyncio.sleep(chunk_delay)
                    await self._gate_wait(sent)
                    sent += 1
            elif kind == "thinking":
                await send(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
                )
                for word in _split_words(block["thinking"]):
                    await send(
                        "content_block_delta", {"index": index, "delta": {"type": "thinking_delta", "thinking": word}}
                    )
                await send(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "signature_delta", "signature": block["signature"]}},
                )
            elif kind == "tool_use":
                await send(
                    "content_block_start",
                    {
                        "index": index,
                        "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}},
                    },
                )
                whole = json.dumps(block["input"])
                pieces = [whole[i : i + 7] for i in range(0, len(whole), 7)] or [""]
                await send(
                    "content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": ""}}
                )
                for piece in pieces:
                    await send(
                        "content_block_delta",
                        {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}},
                    )
                    await self._gate_wait(sent)
                    sent += 1
            await send("content_block_stop", {"index": index})
        if death_at is not None:
            return self._abort(request, response)
        await send(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        await send("message_stop", {})
        await response.write_eof()
        return response


def _split_words(text: str) -> list[str]:
    """A text as the emulator streams it: one word (with its leading space) per delta."""
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]


def _sse(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
