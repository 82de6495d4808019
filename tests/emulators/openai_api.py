"""A local HTTP emulator of the OpenAI REST API, for tests.

The emulator is a real aiohttp server bound to ``127.0.0.1`` on an ephemeral
port.  It runs its own event loop in a daemon thread, so the same instance
serves synchronous tests (``requests``, the sync ``openai`` client, Django's
test client forwarding upstream) and asynchronous tests (whose own loop is a
different one) alike.

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

import asyncio
import base64
import hashlib
import json
import math
import secrets
import string
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import BodyPartReader, web

__all__ = ["BEHAVIOURS", "REPLY_WORDS", "OpenAIEmulator", "count_words", "reply_text"]

BEHAVIOURS = frozenset({"ok", "invalid", "rate_limited", "quota", "server_error", "slow", "die_mid_stream"})

REPLY_WORDS = ("Hello", " from", " the", " OpenAI", " emulator")
DEFAULT_CHUNKS = len(REPLY_WORDS)
PER_MESSAGE_TOKENS = 3
DEFAULT_EMBEDDING_DIMENSIONS = 8
SYSTEM_FINGERPRINT = "fp_e0e1a7c0de"
TRANSCRIPTION_MODEL_DEFAULT_USAGE_SECONDS = 1.0

_BodyKind = Literal["json", "multipart", "none"]
_Handler = Callable[[web.Request, "_Call"], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------- helpers


def count_words(text: str) -> int:
    """The emulator's token count of a text: its whitespace-separated words."""
    return len(text.split())


def reply_pieces(n: int) -> list[str]:
    """The ``n`` content pieces of a reply; one piece = one token = one chunk."""
    return [REPLY_WORDS[i] if i < len(REPLY_WORDS) else f" word{i}" for i in range(n)]


def reply_text(n: int = DEFAULT_CHUNKS) -> str:
    """The full reply text of ``n`` tokens, e.g. ``reply_text()`` for the default reply."""
    return "".join(reply_pieces(n))


def _random_id(prefix: str, length: int = 29) -> str:
    # Real ids look like "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT": base62 after a prefix.
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


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


def _as_text_list(value: Any) -> list[str]:
    """The separate inputs of an embeddings/completions/moderations request, as text."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]  # a single token-id array
        return [v if isinstance(v, str) else " ".join(map(str, v)) if isinstance(v, list) else str(v) for v in value]
    return []


def _redact_key(key: str) -> str:
    # OpenAI echoes a masked key in the 401 message; keep its shape.
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def _tiny_png() -> bytes:
    """A valid 1x1 RGB PNG, built by hand so the emulator needs no image library."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x10\xa3\x7f")  # filter byte + one RGB pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


TINY_PNG = _tiny_png()


def _fake_mp3(text: str) -> bytes:
    """Deterministic MP3-looking bytes: an ID3v2 header then one silent frame per word.

    0xFFFB9064 is an MPEG-1 Layer III 128 kbit/s 44.1 kHz frame header; such a frame
    is 417 bytes.  Tools that sniff the format recognise it; length grows with input.
    """
    frame = b"\xff\xfb\x90\x64" + b"\x00" * 413
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * max(1, count_words(text))


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


class _Headers(dict[str, str]):
    """Request headers with lower-cased keys and case-insensitive lookups."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class _APIError(Exception):
    """An error to answer in OpenAI's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _missing(param: str) -> _APIError:
    return _APIError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


@dataclass
class _Call:
    """What the endpoint wrapper learned about a request before the handler runs."""

    record: dict[str, Any]
    behaviour: str
    options: dict[str, Any]
    body: Any = None
    request_id: str = field(default_factory=lambda: "req_" + secrets.token_hex(16))

    @property
    def json(self) -> dict[str, Any]:
        assert isinstance(self.body, dict)
        return self.body

    @property
    def wants_stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    def include_usage(self) -> bool:
        options = self.json.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


# --------------------------------------------------------------------------- emulator


class OpenAIEmulator:
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

    def __init__(
        self,
        *,
        valid_keys: Iterable[str] = ("sk-upstream-good",),
        models: Iterable[str] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small"),
    ) -> None:
        self._initial_valid_keys = tuple(valid_keys)
        self._initial_models = tuple(models)
        # Public, mutable state; reset() restores all of it.
        self.valid_keys: set[str] = set(self._initial_valid_keys)
        self.models: list[str] = list(self._initial_models)
        self.requests: list[dict[str, Any]] = []
        self.usage_in_stream: bool = True
        self.report_usage: bool = True

        self.host = "127.0.0.1"
        self.port: int | None = None

        # Behaviours are written by test threads and read by the server thread.
        self._lock = threading.Lock()
        self._behaviours: dict[str, tuple[str, dict[str, Any]]] = {}
        self._gate_enabled = False
        self._released: set[int] = set()

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._gate_changed: asyncio.Event | None = None
        self._startup_error: BaseException | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``)."""
        if self.port is None:
            raise RuntimeError("OpenAIEmulator is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, what the ``openai`` SDK takes as ``base_url``."""
        return f"{self.root_url}/v1"

    def start(self) -> OpenAIEmulator:
        """Start the server thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("OpenAIEmulator already started")
        self._startup_error = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="openai-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("OpenAIEmulator did not start within 30s")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("OpenAIEmulator failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop the server and its thread.

        Requests still in flight (a stream paused on the gate, a "slow" sleep)
        get half a second, then are cancelled and their connections closed, so
        their clients see a connection error rather than a finished answer.
        """
        thread, loop, runner = self._thread, self._loop, self._runner
        if thread is None or loop is None or runner is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            self._thread = self._loop = self._runner = None
            self.port = None

    def __enter__(self) -> OpenAIEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._start_site())
        except BaseException as exc:  # noqa: BLE001 - re-raised by start() in the caller's thread
            self._startup_error = exc
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            # Anything still running (e.g. a handler sleeping for "slow") is cancelled
            # so the loop closes without "Task was destroyed but it is pending".
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start_site(self) -> None:
        self._gate_changed = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        routes: list[tuple[str, str, _Handler, _BodyKind]] = [
            ("POST", "/v1/chat/completions", self._chat_completions, "json"),
            ("POST", "/v1/completions", self._completions, "json"),
            ("POST", "/v1/embeddings", self._embeddings, "json"),
            ("GET", "/v1/models", self._list_models, "none"),
            ("GET", "/v1/models/{model_id:.+}", self._retrieve_model, "none"),
            ("POST", "/v1/responses", self._responses, "json"),
            ("POST", "/v1/images/generations", self._images_generations, "json"),
            ("POST", "/v1/audio/speech", self._audio_speech, "json"),
            ("POST", "/v1/audio/transcriptions", self._audio_transcriptions, "multipart"),
            ("POST", "/v1/moderations", self._moderations, "json"),
        ]
        for method, path, handler, body_kind in routes:
            app.router.add_route(method, path, self._endpoint(handler, body_kind))
        # Image "urls" point here, like OpenAI's public blob links: no auth, not recorded.
        app.router.add_get("/_emulator/images/{name}", self._serve_image)
        # Last: everything else gets OpenAI's "Invalid URL" 404 (including wrong methods).
        app.router.add_route("*", "/{tail:.*}", self._endpoint(self._invalid_url, "none"))

        # handler_cancellation: a client that hangs up cancels its handler, so a
        # stream paused on the gate does not outlive the test that abandoned it.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[0][1]  # port 0 above: the OS picked a free one

    # ---------------------------------------------------------------- test controls

    def set_key_behaviour(self, key: str, behaviour: str, **kw: Any) -> None:
        """Decide how requests authenticated with ``key`` are answered.

        - ``"ok"``: answer normally (even when the key is not in ``valid_keys``).
        - ``"invalid"``: 401, code ``invalid_api_key``.
        - ``"rate_limited"``: 429, code ``rate_limit_exceeded``, header
          ``Retry-After: kw.get("retry_after", 30)``.
        - ``"quota"``: 429 with type and code ``insufficient_quota``.
        - ``"server_error"``: 500, type ``server_error``.
        - ``"slow"``: sleep ``kw["delay"]`` seconds, then answer normally;
          optional ``kw["chunk_delay"]`` also sleeps after every content chunk.
        - ``"die_mid_stream"``: a stream sends ``kw.get("chunks_before_death", 2)``
          content chunks then the TCP connection is aborted (no finish chunk, no
          ``[DONE]``, no terminating HTTP chunk).  A non-stream request is
          aborted before any response byte.
        """
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {sorted(BEHAVIOURS)}")
        if behaviour == "slow" and "delay" not in kw:
            raise ValueError('behaviour "slow" needs delay=SECONDS')
        with self._lock:
            self._behaviours[key] = (behaviour, dict(kw))

    def reset(self) -> None:
        """Back to the just-constructed state: no requests, behaviours, gate or flags."""
        with self._lock:
            self._behaviours.clear()
            self._gate_enabled = False
            self._released.clear()
        self.requests.clear()  # in place: callers may hold a reference to the list
        self.valid_keys = set(self._initial_valid_keys)
        self.models = list(self._initial_models)
        self.usage_in_stream = True
        self.report_usage = True
        self._notify_gate()  # streams paused by a previous test may go on

    def enable_stream_gate(self) -> None:
        """Pause every stream after content chunk ``i`` until ``release(i)``."""
        with self._lock:
            self._gate_enabled = True

    def disable_stream_gate(self) -> None:
        """Stop pausing streams, let paused ones go on and forget past releases."""
        with self._lock:
            self._gate_enabled = False
            self._released.clear()
        self._notify_gate()

    def release(self, i: int) -> None:
        """Let streams paused after content chunk ``i`` go on (callable from any thread).

        Releases are remembered: releasing ``i`` before a stream reaches it means
        that stream will not pause there.  Each index is released separately.
        """
        with self._lock:
            self._released.add(i)
        self._notify_gate()

    @property
    def last_request(self) -> dict[str, Any]:
        """The most recent entry of :attr:`requests`."""
        if not self.requests:
            raise LookupError("the emulator has received no request")
        return self.requests[-1]

    def _notify_gate(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._broadcast_gate)

    def _broadcast_gate(self) -> None:
        # Runs in the server loop: wake every waiter by swapping in a fresh event.
        old, self._gate_changed = self._gate_changed, asyncio.Event()
        if old is not None:
            old.set()

    async def _gate_wait(self, i: int) -> None:
        while True:
            changed = self._gate_changed
            with self._lock:
                blocked = self._gate_enabled and i not in self._released
            if not blocked or changed is None:
                return
            await changed.wait()

    # ---------------------------------------------------------------- request plumbing

    def _endpoint(
        self, handler: _Handler, body_kind: _BodyKind
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap ``handler`` with recording, authentication and key behaviours."""

        async def endpoint(request: web.Request) -> web.StreamResponse:
            raw = await request.read() if body_kind == "json" else b""
            body: Any = None
            invalid_json = False
            if body_kind == "json":
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    invalid_json = True
            record: dict[str, Any] = {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": _Headers((k.lower(), v) for k, v in request.headers.items()),
                "json": body,
                "body": raw,
                "key": self._bearer_key(request),
                "time": time.time(),
            }
            self.requests.append(record)
            behaviour, options = self._behaviour_for(record["key"])
            call = _Call(record=record, behaviour=behaviour, options=options, body=body)
            try:
                self._authorize(call)
                if body_kind == "json" and (invalid_json or not isinstance(body, dict)):
                    raise _APIError(
                        400,
                        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                        "sent was not valid JSON.)",
                    )
                if behaviour == "slow":
                    await asyncio.sleep(float(options["delay"]))
                if behaviour == "die_mid_stream" and not call.wants_stream:
                    return self._abort(request, web.StreamResponse())
                return await handler(request, call)
            except _APIError as err:
                return self._json_response(call, err.body(), status=err.status, extra_headers=err.headers)

        return endpoint

    @staticmethod
    def _bearer_key(request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return key.strip() or None

    def _behaviour_for(self, key: str | None) -> tuple[str, dict[str, Any]]:
        with self._lock:
            if key is not None and key in self._behaviours:
                return self._behaviours[key]
        return ("ok", {}) if key in self.valid_keys else ("invalid", {})

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

    def _json_response(
        self,
        call: _Call,
        payload: Any,
        *,
        status: int = 200,
        extra_headers: dict[str, str] | None = None,
    ) -> web.Response:
        headers = self._common_headers(call)
        headers.update(extra_headers or {})
        # Pretty-printed like the real API's non-stream bodies.
        return web.Response(
            status=status, text=json.dumps(payload, indent=2), content_type="application/json", headers=headers
        )

    @staticmethod
    def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """Drop the TCP connection at once (RST-like, unflushed data discarded).

        aiohttp then fails to write the end of the response, sees a
        ConnectionError and treats it as a client disconnection, quietly.
        """
        transport = request.transport
        if transport is not None:
            transport.abort()
        return response

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
        length, truncated = self._reply_length(body, "max_completion_tokens", "max_tokens")
        pieces = reply_pieces(length)
        finish_reason = "length" if truncated else "stop"
        prompt_tokens = _messages_tokens(messages)
        usage = self._chat_usage(prompt_tokens, length * n_choices)
        completion_id = _random_id("chatcmpl-")
        created = int(time.time())

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

    async def _images_generations(self, request: web.Request, call: _Call) -> web.StreamResponse:
        body = call.json
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _missing("prompt")
        # The model is optional here (dall-e-2 by default) and image models are
        # not in the chat-model list, so any model name is accepted.
        model = body.get("model") or "dall-e-2"
        n = self._choice_count(body)
        gpt_image = model.startswith("gpt-image")
        # gpt-image-* models always answer base64; dall-e-* default to urls.
        response_format = "b64_json" if gpt_image else body.get("response_format") or "url"
        if response_format not in ("url", "b64_json"):
            raise _APIError(
                400,
                f"Invalid value for 'response_format': {response_format!r}.",
                param="response_format",
                code="invalid_value",
            )
        images: list[dict[str, Any]] = []
        for index in range(n):
            image: dict[str, Any] = (
                {"b64_json": base64.b64encode(TINY_PNG).decode()}
                if response_format == "b64_json"
                else {"url": f"{self.root_url}/_emulator/images/{secrets.token_hex(8)}-{index}.png"}
            )
            if model == "dall-e-3":
                image["revised_prompt"] = prompt
            images.append(image)
        payload: dict[str, Any] = {"created": int(time.time()), "data": images}
        if gpt_image:
            payload.update(
                background="opaque", output_format="png", quality="medium", size=body.get("size") or "1024x1024"
            )
            if self.report_usage:
                text_tokens = count_words(prompt)
                payload["usage"] = {
                    "input_tokens": text_tokens,
                    "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
                    "output_tokens": 1056 * n,
                    "total_tokens": text_tokens + 1056 * n,
                }
        return self._json_response(call, payload)

    async def _serve_image(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=TINY_PNG, content_type="image/png")

    # ---------------------------------------------------------------- audio

    _SPEECH_CONTENT_TYPES = {
        "mp3": "audio/mpeg",
        "opus": "audio/opus",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }

    async def _audio_speech(self, request: web.Request, call: _Call) -> web.StreamResponse:
        body = call.json
        for name in ("model", "input", "voice"):
            if body.get(name) in (None, ""):
                raise _missing(name)
        audio_format = body.get("response_format") or "mp3"
        content_type = self._SPEECH_CONTENT_TYPES.get(audio_format)
        if content_type is None:
            raise _APIError(
                400,
                f"Invalid value for 'response_format': {audio_format!r}.",
                param="response_format",
                code="invalid_value",
            )
        headers = self._common_headers(call)
        # Same bytes whatever the format: tests check plumbing, not audio decoding.
        return web.Response(body=_fake_mp3(str(body["input"])), content_type=content_type, headers=headers)

    async def _audio_transcriptions(self, request: web.Request, call: _Call) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise _APIError(400, "Invalid Content-Type header (expected multipart/form-data).")
        form: dict[str, str] = {}
        files: dict[str, dict[str, Any]] = {}
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue  # nested multipart bodies are not used by this API
            data = await part.read()
            if part.filename is not None:
                files[part.name] = {
                    "filename": part.filename,
                    "content_type": part.headers.get("Content-Type"),
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            else:
                form[part.name] = bytes(data).decode("utf-8", "replace")
        call.record["form"] = form
        call.record["files"] = files

        if "file" not in files:
            raise _missing("file")
        if not form.get("model"):
            raise _missing("model")
        model = form["model"]
        text = f"Hello from the OpenAI emulator, {files['file']['size']} bytes heard."
        response_format = form.get("response_format", "json")
        headers = self._common_headers(call)
        if response_format == "text":
            return web.Response(text=text + "\n", content_type="text/plain", headers=headers)
        if response_format == "srt":
            srt = f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n"
            return web.Response(text=srt, content_type="text/plain", headers=headers)
        if response_format == "vtt":
            vtt = f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n"
            return web.Response(text=vtt, content_type="text/plain", headers=headers)
        if response_format not in ("json", "verbose_json"):
            raise _APIError(
                400,
                f"Invalid value for 'response_format': {response_format!r}.",
                param="response_format",
                code="invalid_value",
            )

        seconds = TRANSCRIPTION_MODEL_DEFAULT_USAGE_SECONDS
        usage: dict[str, Any]
        if model.startswith("whisper"):
            usage = {"type": "duration", "seconds": seconds}
        else:
            audio_tokens = max(1, files["file"]["size"] // 1000)
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": count_words(text),
                "total_tokens": audio_tokens + count_words(text),
            }
        payload: dict[str, Any] = {"text": text}
        if response_format == "verbose_json":
            payload = {
                "task": "transcribe",
                "language": "english",
                "duration": seconds,
                "text": text,
                "segments": [
                    {
                        "id": 0,
                        "seek": 0,
                        "start": 0.0,
                        "end": seconds,
                        "text": text,
                        "tokens": list(range(50364, 50364 + count_words(text))),
                        "temperature": 0.0,
                        "avg_logprob": -0.1,
                        "compression_ratio": 1.0,
                        "no_speech_prob": 0.0,
                    }
                ],
            }
            usage = {"type": "duration", "seconds": seconds}
        if self.report_usage:
            payload["usage"] = usage
        return self._json_response(call, payload)

    # ---------------------------------------------------------------- moderations

    _MODERATION_CATEGORIES = (
        "harassment",
        "harassment/threatening",
        "hate",
        "hate/threatening",
        "illicit",
        "illicit/violent",
        "self-harm",
        "self-harm/instructions",
        "self-harm/intent",
        "sexual",
        "sexual/minors",
        "violence",
        "violence/graphic",
    )
    _IMAGE_CATEGORIES = frozenset(
        {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
    )

    async def _moderations(self, request: web.Request, call: _Call) -> web.StreamResponse:
        """Flags ``violence`` when a text contains "kill" (case-insensitive); nothing else."""
        body = call.json
        value = body.get("input")
        if value is None:
            raise _missing("input")
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            # Multi-modal input: one result for the whole list of parts.
            texts = [_content_text(value)]
            has_image = any(v.get("type") == "image_url" for v in value)
        else:
            texts = _as_text_list(value)
            has_image = False
        results = []
        for text in texts:
            violent = "kill" in text.lower()
            categories = {name: violent and name == "violence" for name in self._MODERATION_CATEGORIES}
            scores = {name: (0.93 if categories[name] else 1e-6) for name in self._MODERATION_CATEGORIES}
            applied = {
                name: ["text", "image"] if has_image and name in self._IMAGE_CATEGORIES else ["text"]
                for name in self._MODERATION_CATEGORIES
            }
            results.append(
                {
                    "flagged": violent,
                    "categories": categories,
                    "category_scores": scores,
                    "category_applied_input_types": applied,
                }
            )
        payload = {
            "id": "modr-" + secrets.token_hex(16),
            "model": body.get("model") or "omni-moderation-latest",
            "results": results,
        }
        return self._json_response(call, payload)

    # ---------------------------------------------------------------- fallback

    async def _invalid_url(self, request: web.Request, call: _Call) -> web.StreamResponse:
        raise _APIError(404, f"Invalid URL ({request.method} {request.path})")


class _EventStream:
    """One ``text/event-stream`` response; every event is written (and so sent) at once."""

    def __init__(
        self, emulator: OpenAIEmulator, request: web.Request, call: _Call, response: web.StreamResponse
    ) -> None:
        self._emulator = emulator
        self._request = request
        self._call = call
        self._response = response
        self._sequence = 0
        dies = call.behaviour == "die_mid_stream"
        self._death_at: int | None = int(call.options.get("chunks_before_death", 2)) if dies else None
        chunk_delay = call.options.get("chunk_delay") if call.behaviour == "slow" else None
        self._chunk_delay = float(chunk_delay) if chunk_delay else 0.0

    @classmethod
    async def open(cls, emulator: OpenAIEmulator, request: web.Request, call: _Call) -> _EventStream:
        headers = emulator._common_headers(call)
        headers.update({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        return cls(emulator, request, call, response)

    async def data(self, payload: Any) -> None:
        """A Chat/Completions-style event: ``data: {json}``."""
        await self._response.write(f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode())

    async def event(self, event_type: str, payload: dict[str, Any]) -> None:
        """A Responses-style event: named, typed and sequence-numbered."""
        body = {"type": event_type, "sequence_number": self._sequence, **payload}
        self._sequence += 1
        text = f"event: {event_type}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
        await self._response.write(text.encode())

    async def content_chunk_sent(self, i: int) -> None:
        """Hook after content chunk ``i``: slow-stream delay, then the test's gate."""
        if self._chunk_delay:
            await asyncio.sleep(self._chunk_delay)
        await self._emulator._gate_wait(i)

    def dies_before(self, i: int) -> bool:
        return self._death_at is not None and i >= self._death_at

    def dies_at_end(self) -> bool:
        # Fewer chunks than chunks_before_death: still die, just before finishing.
        return self._death_at is not None

    def die(self) -> web.StreamResponse:
        return OpenAIEmulator._abort(self._request, self._response)

    async def done(self) -> web.StreamResponse:
        await self._response.write(b"data: [DONE]\n\n")
        return await self.finish()

    async def finish(self) -> web.StreamResponse:
        await self._response.write_eof()
        return self._response
