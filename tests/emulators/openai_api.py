"""A local HTTP emulator of the OpenAI REST API, for tests.

The server machinery (a real aiohttp server on ``127.0.0.1``, an ephemeral
port, its own event loop in a daemon thread; recording, key behaviours, the
stream gate) is tests/emulators/base.py, shared with the other providers'
emulators; the misbehaving-upstream faults are tests/emulators/faults.py;
images, audio and moderations are tests/emulators/openai_media.py.

Response shapes follow OpenAI's public API reference and the types of the
official ``openai`` SDK pinned in requirements-dev.txt; the test module beside
this file checks every endpoint with ``_strict_response_validation=True``.

Deterministic content
    Replies are made of the words ``"Hello from the OpenAI emulator"``
    (continued as ``" word5"``, ``" word6"``, ... when more are needed).  One
    word is one completion token and one streamed content chunk.  The number of
    words is the (non-standard) request field ``stream_chunks`` when present,
    else 5; ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``
    cut it shorter (with ``finish_reason="length"`` / status ``incomplete``).

Prompt token count (documented so that tests can predict usage)
    ``prompt_tokens`` = for every message, the number of whitespace-separated
    words of its text content plus 3 (a stand-in for OpenAI's per-message
    overhead).  A Responses API string ``input`` counts as one message, and
    ``instructions`` as one more.  Text completions and embeddings count only
    the words (or the number of token ids when token ids are sent).

Per-key behaviour
    The key in ``Authorization: Bearer KEY`` selects a behaviour, see
    :meth:`OpenAIEmulator.set_key_behaviour`.  Keys in ``valid_keys`` behave
    "ok"; every other key gets OpenAI's 401 ``invalid_api_key`` error.

Streaming gate
    With :meth:`OpenAIEmulator.enable_stream_gate`, a streaming handler pauses
    after sending content chunk ``i`` (0-based; the initial role chunk is not
    counted) until a test calls :meth:`OpenAIEmulator.release` with ``i``.  This
    lets a test observe a proxy mid-stream without sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
import struct
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from .base import APIError as _APIError
from .base import BodyKind as _BodyKind
from .base import Call as _Call
from .base import EmulatorBase, Handler
from .base import EventStream as _EventStream
from .base import random_id as _random_id
from .openai_media import MediaEndpoints, _as_text_list, _content_text, count_words
from .schemas import sample

__all__ = ["BEHAVIOURS", "REPLY_WORDS", "OpenAIEmulator", "count_words", "reply_text"]

BEHAVIOURS = frozenset({"ok", "invalid", "rate_limited", "quota", "server_error", "slow", "die_mid_stream"})

REPLY_WORDS = ("Hello", " from", " the", " OpenAI", " emulator")
DEFAULT_CHUNKS = len(REPLY_WORDS)
PER_MESSAGE_TOKENS = 3
DEFAULT_EMBEDDING_DIMENSIONS = 8
SYSTEM_FINGERPRINT = "fp_e0e1a7c0de"
TOOL_CALL_TOKENS = 12  # completion tokens of one tool call


# --------------------------------------------------------------------------- helpers


def reply_pieces(n: int) -> list[str]:
    """The ``n`` content pieces of a reply; one piece = one token = one chunk."""
    return [REPLY_WORDS[i] if i < len(REPLY_WORDS) else f" word{i}" for i in range(n)]


def reply_text(n: int = DEFAULT_CHUNKS) -> str:
    """The full reply text of ``n`` tokens, e.g. ``reply_text()`` for the default reply."""
    return "".join(reply_pieces(n))


def _messages_tokens(messages: Iterable[Any]) -> int:
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        total += count_words(_content_text(content)) + PER_MESSAGE_TOKENS
    return total


def _prompt_tokens_of_input(value: Any) -> int:
    """Token count of a completions ``prompt`` or embeddings ``input``."""
    if isinstance(value, str):
        return count_words(value)
    if isinstance(value, list):
        if all(isinstance(v, int) for v in value):
            return len(value)  # one token-id array
        return sum(_prompt_tokens_of_input(v) for v in value)
    return 0


def _redact_key(key: str) -> str:
    # OpenAI echoes a masked key in the 401 message; keep its shape.
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def _embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-length vector derived from ``text``.

    Values are rounded through float32 so that the ``float`` and ``base64``
    encodings of the same input decode to exactly the same numbers.
    """
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend((b / 127.5) - 1.0 for b in digest)
        counter += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in raw))
    return list(struct.unpack(f"<{dimensions}f", packed))


def _missing(param: str) -> _APIError:
    return _APIError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


class OpenAIEmulator(MediaEndpoints, EmulatorBase):
    """A local OpenAI API server; see the module docstring for its conventions.

    Every request received (authenticated or not) is appended to
    :attr:`requests` as a dict with ``method``, ``path`` (e.g.
    ``"/v1/chat/completions"``), ``query``, ``headers`` (a dict with lower-cased
    keys whose lookups ignore case), ``json`` (the parsed body, or None),
    ``body`` (the raw bytes; ``b""`` for GET and multipart), ``key`` (the bearer
    key, or None) and ``time`` (``time.time()`` on arrival).  Transcription
    requests also get ``form`` (text fields) and ``files`` (per file field:
    filename, content_type, size, sha256).
    """

    NAME = "openai"
    BEHAVIOURS = BEHAVIOURS

    def __init__(
        self,
        *,
        valid_keys: Iterable[str] = ("sk-upstream-good",),
        models: Iterable[str] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small"),
    ) -> None:
        super().__init__(valid_keys=valid_keys)
        self._initial_models = tuple(models)
        # Public, mutable state; reset() restores all of it.
        self.models: list[str] = list(self._initial_models)
        self.usage_in_stream: bool = True
        self.report_usage: bool = True

    def routes(self) -> list[tuple[str, str, Handler, _BodyKind]]:
        return [
            ("POST", "/v1/chat/completions", self._chat_completions, "json"),
            ("POST", "/v1/completions", self._completions, "json"),
            ("POST", "/v1/embeddings", self._embeddings, "json"),
            ("GET", "/v1/models", self._list_models, "none"),
            ("GET", "/v1/models/{model_id:.+}", self._retrieve_model, "none"),
            ("POST", "/v1/responses", self._responses, "json"),
            ("POST", "/v1/images/generations", self._images_generations, "json"),
            ("POST", "/v1/audio/speech", self._audio_speech, "json"),
            ("POST", "/v1/audio/transcriptions", self._audio_transcriptions, "multipart"),
            ("POST", "/v1/audio/translations", self._audio_transcriptions, "multipart"),
            ("POST", "/v1/moderations", self._moderations, "json"),
        ]

    def add_extra_routes(self, app: web.Application) -> None:
        # Image "urls" point here, like OpenAI's public blob links: no auth, not recorded.
        app.router.add_get("/_emulator/images/{name}", self._serve_image)
        # Last: everything else gets OpenAI's "Invalid URL" 404 (including wrong methods).
        app.router.add_route("*", "/{tail:.*}", self._endpoint(self._invalid_url, "none"))

    def set_key_behaviour(self, key: str, behaviour: str, **kw: Any) -> None:
        """Decide how requests authenticated with ``key`` are answered.

        - ``"ok"``: answer normally (even when the key is not in ``valid_keys``).
        - ``"invalid"``: 401, code ``invalid_api_key``.
        - ``"rate_limited"``: 429, code ``rate_limit_exceeded``, header
          ``Retry-After: kw.get("retry_after", 30)`` (any value, odd ones too).
        - ``"quota"``: 429 with type and code ``insufficient_quota``.
        - ``"server_error"``: 500, type ``server_error``.
        - ``"slow"``: sleep ``kw["delay"]`` seconds, then answer normally;
          optional ``kw["chunk_delay"]`` also sleeps after every content chunk.
        - ``"die_mid_stream"``: a stream sends ``kw.get("chunks_before_death", 2)``
          content chunks then the TCP connection is aborted (no finish chunk, no
          ``[DONE]``, no terminating HTTP chunk).  A non-stream request is
          aborted before any response byte.
        - any fault of tests/emulators/faults.py (the misbehaving upstream).
        """
        super().set_key_behaviour(key, behaviour, **kw)

    def reset(self) -> None:
        """Back to the just-constructed state: no requests, behaviours, gate or flags."""
        self.models = list(self._initial_models)
        self.usage_in_stream = True
        self.report_usage = True
        super().reset()

    def invalid_json_error(self) -> _APIError:
        return _APIError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
            "sent was not valid JSON.)",
        )

    # ---------------------------------------------------------------- faults (tests/emulators/faults.py)

    def fault_event(self, call: _Call, text: str) -> bytes:
        model = call.body.get("model") if isinstance(call.body, dict) else None
        chunk = {
            "id": "chatcmpl-fault",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model or "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}],
        }
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    def fault_stream_end(self, call: _Call) -> bytes:
        return b"data: [DONE]\n\n"

    def fault_body(self, call: _Call, text: str) -> bytes:
        model = call.body.get("model") if isinstance(call.body, dict) else None
        answer = {
            "id": "chatcmpl-fault",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model or "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": self._chat_usage(10, count_words(text)),
        }
        return json.dumps(answer, indent=2).encode()

    def _authorize(self, call: _Call) -> None:
        """Raise the error a key's behaviour calls for (before the body is validated)."""
        key = call.record["key"]
        if key is None:
            raise _APIError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
                "username) if you're accessing the API from your browser and are prompted for a username and "
                "password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            )
        if call.behaviour == "invalid":
            raise _APIError(
                401,
                f"Incorrect API key provided: {_redact_key(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        if call.behaviour == "rate_limited":
            retry_after = call.options.get("retry_after", 30)
            model = call.body.get("model", "gpt-4o-mini") if isinstance(call.body, dict) else "gpt-4o-mini"
            raise _APIError(
                429,
                f"Rate limit reached for {model} in organization org-emulator on requests per min (RPM): "
                f"Limit 3, Used 3, Requested 1. Please try again in {retry_after}s. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                type="requests",
                code="rate_limit_exceeded",
                headers={
                    "Retry-After": str(retry_after),
                    "x-ratelimit-limit-requests": "3",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{retry_after}s",
                },
            )
        if call.behaviour == "quota":
            raise _APIError(
                429,
                "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                type="insufficient_quota",
                code="insufficient_quota",
            )
        if call.behaviour == "server_error":
            raise _APIError(
                500,
                "The server had an error while processing your request. Sorry about that!",
                type="server_error",
            )

    def _common_headers(self, call: _Call) -> dict[str, str]:
        # The headers every real OpenAI answer carries; gateways read some of them.
        return {
            "x-request-id": call.request_id,
            "openai-organization": "org-emulator",
            "openai-processing-ms": "1",
            "openai-version": "2020-10-01",
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-limit-tokens": "10000000",
            "x-ratelimit-remaining-tokens": "9999990",
            "x-ratelimit-reset-tokens": "0s",
        }

    def _check_model(self, body: dict[str, Any], *, required: bool = True) -> str:
        model = body.get("model")
        if model is None or model == "":
            if required:
                raise _APIError(400, "you must provide a model parameter")
            return ""
        if not isinstance(model, str):
            raise _APIError(
                400,
                f"Invalid type for 'model': expected a string, but got {type(model).__name__} instead.",
                param="model",
                code="invalid_type",
            )
        if model not in self.models:
            raise _APIError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return model

    @staticmethod
    def _reply_length(body: dict[str, Any], *limit_fields: str) -> tuple[int, bool]:
        """Number of reply tokens and whether a max-tokens limit cut the reply."""
        wanted = body.get("stream_chunks", DEFAULT_CHUNKS)
        if not isinstance(wanted, int) or wanted < 0:
            raise _APIError(400, "'stream_chunks' must be a non-negative integer.", param="stream_chunks")
        for name in limit_fields:
            limit = body.get(name)
            if limit is None:
                continue
            if not isinstance(limit, int) or limit < 1:
                raise _APIError(
                    400, f"Invalid '{name}': integer below minimum value.", param=name, code="integer_below_min_value"
                )
            if limit < wanted:
                return limit, True
        return wanted, False

    @staticmethod
    def _choice_count(body: dict[str, Any]) -> int:
        n = body.get("n", 1)
        if n is None:
            return 1
        if not isinstance(n, int) or n < 1:
            raise _APIError(400, "Invalid 'n': integer below minimum value.", param="n", code="integer_below_min_value")
        return n

    # ---------------------------------------------------------------- chat completions

    async def _chat_completions(self, request: web.Request, call: _Call) -> web.StreamResponse:
        body = call.json
        model = self._check_model(body)
        messages = body.get("messages")
        if messages is None:
            raise _missing("messages")
        if not isinstance(messages, list) or not messages:
            raise _APIError(
                400, "Invalid 'messages': expected a non-empty array.", param="messages", code="invalid_value"
            )
        n_choices = self._choice_count(body)
        calls = self._tool_calls(body, messages)
        length, truncated = self._reply_length(body, "max_completion_tokens", "max_tokens")
        pieces = reply_pieces(length) if not calls else []
        finish_reason = "tool_calls" if calls else "length" if truncated else "stop"
        prompt_tokens = _messages_tokens(messages)
        usage = self._chat_usage(prompt_tokens, TOOL_CALL_TOKENS * len(calls) if calls else length * n_choices)
        completion_id = _random_id("chatcmpl-")
        created = int(time.time())
        if calls:
            return await self._answer_tool_calls(request, call, model, completion_id, created, calls, usage)

        if not call.wants_stream:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": index,
                        "message": {
                            "role": "assistant",
                            "content": "".join(pieces),
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                    for index in range(n_choices)
                ],
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
            if self.report_usage:
                payload["usage"] = usage
            return self._json_response(call, payload)

        send_usage = call.include_usage() and self.usage_in_stream

        def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": choices,
            }
            if send_usage:
                data["usage"] = None  # as the real API: null on every chunk but the last
            return data

        def choice(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

        stream = await _EventStream.open(self, request, call)
        for index in range(n_choices):
            await stream.data(chunk([choice(index, {"role": "assistant", "content": "", "refusal": None})]))
        for i, piece in enumerate(pieces):
            if stream.dies_before(i):
                return stream.die()
            for index in range(n_choices):
                await stream.data(chunk([choice(index, {"content": piece})]))
            await stream.content_chunk_sent(i)
        if stream.dies_at_end():
            return stream.die()
        for index in range(n_choices):
            await stream.data(chunk([choice(index, {}, finish_reason)]))
        if send_usage:
            await stream.data({**chunk([]), "usage": usage})
        return await stream.done()

    @staticmethod
    def _tool_calls(body: dict[str, Any], messages: list[Any]) -> list[dict[str, Any]]:
        """Tool calls to answer with: with ``tools`` (and ``tool_choice`` not
        "none") and a last message from the user, the first tool (the forced
        one), and the second too unless ``parallel_tool_calls`` is false.
        Tool results must answer an earlier assistant tool call, as OpenAI checks."""
        offered: set[str] = set()
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            for tool_call in message.get("tool_calls") or ():
                offered.add(tool_call.get("id"))
            if message.get("role") == "tool" and message.get("tool_call_id") not in offered:
                raise _APIError(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
        tools = body.get("tools") or []
        choice = body.get("tool_choice", "auto")
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        if not tools or choice == "none" or last.get("role") != "user":
            return []
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            tools = [t for t in tools if (t.get("function") or {}).get("name") == name]
        count = 1 if body.get("parallel_tool_calls") is False or len(tools) < 2 else 2
        return [
            {
                "id": _random_id("call_", 24),
                "type": "function",
                "function": {
                    "name": tool["function"]["name"],
                    "arguments": json.dumps(sample(tool["function"].get("parameters"))),
                },
            }
            for tool in tools[:count]
        ]

    async def _answer_tool_calls(
        self,
        request: web.Request,
        call: _Call,
        model: str,
        completion_id: str,
        created: int,
        calls: list[dict[str, Any]],
        usage: dict[str, Any],
    ) -> web.StreamResponse:
        base = {"id": completion_id, "created": created, "model": model, "system_fingerprint": SYSTEM_FINGERPRINT}
        if not call.wants_stream:
            message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None, "annotations": []}
            payload = {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}],
            }
            if self.report_usage:
                payload["usage"] = usage
            return self._json_response(call, payload)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}

        stream = await _EventStream.open(self, request, call)
        await stream.data(chunk({"role": "assistant", "content": None}))
        for index, tool_call in enumerate(calls):
            head = {"index": index, "id": tool_call["id"], "type": "function",
                    "function": {"name": tool_call["function"]["name"], "arguments": ""}}  # fmt: skip
            await stream.data(chunk({"tool_calls": [head]}))
            arguments = tool_call["function"]["arguments"]
            for start in range(0, len(arguments), 8):
                piece = {"index": index, "function": {"arguments": arguments[start : start + 8]}}
                await stream.data(chunk({"tool_calls": [piece]}))
        await stream.data(chunk({}, "tool_calls"))
        if call.include_usage() and self.usage_in_stream:
            await stream.data({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        return await stream.done()

    @staticmethod
    def _chat_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    # ---------------------------------------------------------------- legacy completions

    async def _completions(self, request: web.Request, call: _Call) -> web.StreamResponse:
        body = call.json
        model = self._check_model(body)
        if body.get("prompt") is None:
            raise _missing("prompt")
        prompts = _as_text_list(body["prompt"]) or [""]
        n_choices = self._choice_count(body) * len(prompts)  # one choice per prompt per n
        length, truncated = self._reply_length(body, "max_tokens")
        pieces = reply_pieces(length)
        finish_reason = "length" if truncated else "stop"
        prompt_tokens = _prompt_tokens_of_input(body["prompt"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": length * n_choices,
            "total_tokens": prompt_tokens + length * n_choices,
        }
        completion_id = _random_id("cmpl-")
        created = int(time.time())

        def envelope(choices: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": choices,
            }

        def choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
            return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}

        if not call.wants_stream:
            payload = envelope([choice(i, "".join(pieces), finish_reason) for i in range(n_choices)])
            if self.report_usage:
                payload["usage"] = usage
            return self._json_response(call, payload)

        send_usage = call.include_usage() and self.usage_in_stream
        stream = await _EventStream.open(self, request, call)
        for i, piece in enumerate(pieces):
            if stream.dies_before(i):
                return stream.die()
            for index in range(n_choices):
                data = envelope([choice(index, piece, None)])
                if send_usage:
                    data["usage"] = None
                await stream.data(data)
            await stream.content_chunk_sent(i)
        if stream.dies_at_end():
            return stream.die()
        for index in range(n_choices):
            data = envelope([choice(index, "", finish_reason)])
            if send_usage:
                data["usage"] = None
            await stream.data(data)
        if send_usage:
            await stream.data({**envelope([]), "usage": usage})
        return await stream.done()

    # ---------------------------------------------------------------- embeddings

    async def _embeddings(self, request: web.Request, call: _Call) -> web.StreamResponse:
        body = call.json
        model = self._check_model(body)
        if body.get("input") is None:
            raise _missing("input")
        inputs = _as_text_list(body["input"])
        if not inputs or any(text == "" for text in inputs):
            raise _APIError(
                400,
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                param="input",
            )
        dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
        if not isinstance(dimensions, int) or dimensions < 1:
            raise _APIError(
                400,
                "Invalid 'dimensions': integer below minimum value.",
                param="dimensions",
                code="integer_below_min_value",
            )
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _APIError(
                400,
                f"Invalid value for 'encoding_format': {encoding!r}. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )

        data = []
        for index, text in enumerate(inputs):
            vector = _embedding_vector(text, dimensions)
            # The SDK asks for base64 by default: little-endian float32, base64-encoded.
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if encoding == "base64" else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = _prompt_tokens_of_input(body["input"])
        payload: dict[str, Any] = {"object": "list", "data": data, "model": model}
        # The SDK requires usage here; report_usage=False still sends it but zeroed.
        payload["usage"] = (
            {"prompt_tokens": tokens, "total_tokens": tokens}
            if self.report_usage
            else {"prompt_tokens": 0, "total_tokens": 0}
        )
        return self._json_response(call, payload)

    # ---------------------------------------------------------------- models

    def _model_object(self, model_id: str) -> dict[str, Any]:
        created = 1_700_000_000 + self.models.index(model_id)
        return {"id": model_id, "object": "model", "created": created, "owned_by": "system"}

    async def _list_models(self, request: web.Request, call: _Call) -> web.StreamResponse:
        return self._json_response(call, {"object": "list", "data": [self._model_object(m) for m in self.models]})

    async def _retrieve_model(self, request: web.Request, call: _Call) -> web.StreamResponse:
        model_id = request.match_info["model_id"]
        if model_id not in self.models:
            raise _APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return self._json_response(call, self._model_object(model_id))

    # ---------------------------------------------------------------- responses API

    async def _responses(self, request: web.Request, call: _Call) -> web.StreamResponse:
        body = call.json
        if body.get("model") in (None, ""):
            raise _missing("model")
        model = self._check_model(body)
        length, truncated = self._reply_length(body, "max_output_tokens")
        pieces = reply_pieces(length)
        input_tokens = self._responses_input_tokens(body)
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": length,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + length,
        }
        response_id = "resp_" + secrets.token_hex(24)
        message_id = "msg_" + secrets.token_hex(24)
        created_at = int(time.time())
        final_status = "incomplete" if truncated else "completed"
        text = "".join(pieces)

        def text_part(value: str) -> dict[str, Any]:
            return {"type": "output_text", "annotations": [], "logprobs": [], "text": value}

        def message(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
            return {"id": message_id, "type": "message", "status": status, "content": content, "role": "assistant"}

        def response(status: str, output: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
            done = status in ("completed", "incomplete")
            return {
                "id": response_id,
                "object": "response",
                "created_at": created_at,
                "status": status,
                "background": False,
                "completed_at": int(time.time()) if done else None,
                "error": None,
                "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "max_tool_calls": body.get("max_tool_calls"),
                "model": model,
                "output": output,
                "parallel_tool_calls": body.get("parallel_tool_calls", True),
                "previous_response_id": body.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "service_tier": "default",
                "store": body.get("store", True),
                "temperature": body.get("temperature", 1.0),
                "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": body.get("tool_choice", "auto"),
                "tools": body.get("tools") or [],
                "top_logprobs": body.get("top_logprobs", 0),
                "top_p": body.get("top_p", 1.0),
                "truncation": body.get("truncation", "disabled"),
                "usage": usage if with_usage else None,
                "user": body.get("user"),
                "metadata": body.get("metadata") or {},
            }

        final_message = message(final_status, [text_part(text)])
        if not call.wants_stream:
            payload = response(final_status, [final_message], with_usage=True)
            if not self.report_usage:
                del payload["usage"]
            return self._json_response(call, payload)

        # The real event sequence; there is no "[DONE]" on this API.
        stream = await _EventStream.open(self, request, call)
        await stream.event("response.created", {"response": response("in_progress", [], with_usage=False)})
        await stream.event("response.in_progress", {"response": response("in_progress", [], with_usage=False)})
        await stream.event("response.output_item.added", {"output_index": 0, "item": message("in_progress", [])})
        where = {"item_id": message_id, "output_index": 0, "content_index": 0}
        await stream.event("response.content_part.added", {**where, "part": text_part("")})
        for i, piece in enumerate(pieces):
            if stream.dies_before(i):
                return stream.die()
            await stream.event("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
            await stream.content_chunk_sent(i)
        if stream.dies_at_end():
            return stream.die()
        await stream.event("response.output_text.done", {**where, "text": text, "logprobs": []})
        await stream.event("response.content_part.done", {**where, "part": text_part(text)})
        await stream.event("response.output_item.done", {"output_index": 0, "item": final_message})
        final = response(final_status, [final_message], with_usage=self.usage_in_stream)
        await stream.event(f"response.{final_status}", {"response": final})
        return await stream.finish()

    @staticmethod
    def _responses_input_tokens(body: dict[str, Any]) -> int:
        tokens = 0
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            tokens += count_words(instructions) + PER_MESSAGE_TOKENS
        value = body.get("input")
        if isinstance(value, str):
            tokens += count_words(value) + PER_MESSAGE_TOKENS
        elif isinstance(value, list):
            tokens += _messages_tokens(value)
        return tokens

    # ---------------------------------------------------------------- images

    # ---------------------------------------------------------------- fallback

    async def _invalid_url(self, request: web.Request, call: _Call) -> web.StreamResponse:
        raise _APIError(404, f"Invalid URL ({request.method} {request.path})")
