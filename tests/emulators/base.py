"""The server machinery every upstream emulator shares.

An emulator is a real aiohttp server bound to ``127.0.0.1`` on an ephemeral
port, running its own event loop in a daemon thread, so the same instance
serves synchronous tests (``requests``, the sync SDKs) and asynchronous tests
(whose own loop is a different one) alike.

A provider's emulator subclasses :class:`EmulatorBase` and supplies its
routes, its authentication rules (``_authorize``), its error shape
(``error_payload``) and one content event of its stream format
(``fault_event``). The base records every request, looks up the behaviour
of the request's key, runs the misbehaving-upstream faults
(tests/emulators/faults.py) and offers the streaming gate: a stream pauses
after content chunk ``i`` until a test calls :meth:`EmulatorBase.release`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from . import faults

__all__ = ["APIError", "Call", "EmulatorBase", "EventStream", "Headers", "random_id"]

BodyKind = Literal["json", "multipart", "none"]
Handler = Callable[[web.Request, "Call"], Awaitable[web.StreamResponse]]


class Headers(dict[str, str]):
    """Request headers with lower-cased keys and case-insensitive lookups."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class APIError(Exception):
    """An error to answer in the provider's error shape (``error_payload``)."""

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


@dataclass
class Call:
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


def random_id(prefix: str, length: int = 29) -> str:
    # Real ids look like "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT": base62 after a prefix.
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


class EmulatorBase:
    """A local provider API server: lifecycle, recording, key behaviours,
    faults and the stream gate. Subclasses set ``NAME``, ``BEHAVIOURS`` (their
    own, on top of :data:`faults.FAULTS`) and implement ``routes``."""

    NAME = "emulator"
    BEHAVIOURS: frozenset[str] = frozenset({"ok"})
    # The URL prefix the provider's SDK puts after the host ("/v1" for OpenAI).
    API_PREFIX = "/v1"

    def __init__(self, *, valid_keys: Iterable[str] = ()) -> None:
        self._initial_valid_keys = tuple(valid_keys)
        self.valid_keys: set[str] = set(self._initial_valid_keys)
        self.requests: list[dict[str, Any]] = []
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

    # ---------------------------------------------------------------- what a provider supplies

    def routes(self) -> list[tuple[str, str, Handler, BodyKind]]:
        raise NotImplementedError

    def add_extra_routes(self, app: web.Application) -> None:
        """Routes outside the recorded API (e.g. image blobs) and the catch-all."""

    def _authorize(self, call: Call) -> None:
        """Raise the error a key's behaviour calls for (before the body is validated)."""

    def _common_headers(self, call: Call) -> dict[str, str]:
        return {"x-request-id": call.request_id}

    def error_payload(self, error: APIError) -> dict[str, Any]:
        return error.body()

    def fault_event(self, call: Call, text: str) -> bytes:
        """One content event of this provider's stream format, carrying ``text``."""
        raise NotImplementedError

    def fault_stream_end(self, call: Call) -> bytes:
        """What ends this provider's stream cleanly."""
        raise NotImplementedError

    def fault_body(self, call: Call, text: str) -> bytes:
        """A whole non-stream answer carrying ``text``."""
        raise NotImplementedError

    def fault_error_event(self, call: Call, message: str) -> bytes:
        """An error event in this provider's stream format."""
        payload = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        return f"data: {json.dumps(payload)}\n\n".encode()

    def _key_of(self, request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return key.strip() or None

    # ---------------------------------------------------------------- lifecycle

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no API prefix)."""
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the provider's SDK takes as ``base_url``."""
        return f"{self.root_url}{self.API_PREFIX}"

    def start(self) -> EmulatorBase:
        """Start the server thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._startup_error = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name=f"{self.NAME}-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError(f"{type(self).__name__} did not start within 30s")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"{type(self).__name__} failed to start") from self._startup_error
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

    def __enter__(self):
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
        for method, path, handler, body_kind in self.routes():
            app.router.add_route(method, path, self._endpoint(handler, body_kind))
        self.add_extra_routes(app)
        # handler_cancellation: a client that hangs up cancels its handler, so a
        # stream paused on the gate does not outlive the test that abandoned it.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[0][1]  # port 0 above: the OS picked a free one

    # ---------------------------------------------------------------- test controls

    def set_key_behaviour(self, key: str, behaviour: str, **kw: Any) -> None:
        """Decide how requests authenticated with ``key`` are answered: one of
        the provider's ``BEHAVIOURS`` or a fault of tests/emulators/faults.py."""
        if behaviour not in self.BEHAVIOURS | faults.FAULTS:
            expected = sorted(self.BEHAVIOURS | faults.FAULTS)
            raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {expected}")
        if behaviour == "slow" and "delay" not in kw:
            raise ValueError('behaviour "slow" needs delay=SECONDS')
        with self._lock:
            self._behaviours[key] = (behaviour, dict(kw))

    def reset(self) -> None:
        """Back to the just-constructed state: no requests, behaviours or gate."""
        with self._lock:
            self._behaviours.clear()
            self._gate_enabled = False
            self._released.clear()
        self.requests.clear()  # in place: callers may hold a reference to the list
        self.valid_keys = set(self._initial_valid_keys)
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
        self, handler: Handler, body_kind: BodyKind
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap ``handler`` with recording, authentication, key behaviours and faults."""

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
                "headers": Headers((k.lower(), v) for k, v in request.headers.items()),
                "json": body,
                "body": raw,
                "key": self._key_of(request),
                "time": time.time(),
            }
            self.requests.append(record)
            behaviour, options = self._behaviour_for(record["key"])
            call = Call(record=record, behaviour=behaviour, options=options, body=body)
            try:
                if behaviour in faults.FAULTS:
                    answer = await faults.run(self, request, call)
                    if answer is not None:
                        return answer
                self._authorize(call)
                if body_kind == "json" and (invalid_json or not isinstance(body, dict)):
                    raise self.invalid_json_error()
                if behaviour == "slow":
                    await asyncio.sleep(float(options["delay"]))
                if behaviour == "die_mid_stream" and not call.wants_stream:
                    return self._abort(request, web.StreamResponse())
                return await handler(request, call)
            except APIError as err:
                return self._json_response(call, self.error_payload(err), status=err.status, extra_headers=err.headers)

        return endpoint

    def invalid_json_error(self) -> APIError:
        return APIError(400, "We could not parse the JSON body of your request.")

    def _behaviour_for(self, key: str | None) -> tuple[str, dict[str, Any]]:
        with self._lock:
            if key is not None and key in self._behaviours:
                return self._behaviours[key]
        return ("ok", {}) if key in self.valid_keys else ("invalid", {})

    def _json_response(
        self,
        call: Call,
        payload: Any,
        *,
        status: int = 200,
        extra_headers: dict[str, str] | None = None,
    ) -> web.Response:
        headers = self._common_headers(call)
        headers.update(extra_headers or {})
        # Pretty-printed like the real APIs' non-stream bodies.
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


class EventStream:
    """One ``text/event-stream`` response; every event is written (and so sent) at once."""

    def __init__(self, emulator: EmulatorBase, request: web.Request, call: Call, response: web.StreamResponse) -> None:
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
    async def open(cls, emulator: EmulatorBase, request: web.Request, call: Call) -> EventStream:
        headers = emulator._common_headers(call)
        headers.update({"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        return cls(emulator, request, call, response)

    async def data(self, payload: Any) -> None:
        """A Chat/Completions-style event: ``data: {json}``."""
        await self._response.write(f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode())

    async def event(self, event_type: str, payload: dict[str, Any]) -> None:
        """A named, typed and sequence-numbered event (OpenAI Responses, Anthropic)."""
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
        return EmulatorBase._abort(self._request, self._response)

    async def done(self) -> web.StreamResponse:
        await self._response.write(b"data: [DONE]\n\n")
        return await self.finish()

    async def finish(self) -> web.StreamResponse:
        await self._response.write_eof()
        return self._response
