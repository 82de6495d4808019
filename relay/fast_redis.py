"""A minimal asyncio Redis client for the relay's hot path.

In service mode every request makes two Lua calls (take a hold, settle).
Through redis-py's asyncio client each costs ~50-150 µs of Python: pool
checkout and checkin, a lock, command packing, response callbacks. Here a
command is one ``hiredis.pack_command`` and a future on a single persistent
connection; the commands of one event-loop turn go out in one write, and
``hiredis.Reader`` parses the replies in ``data_received`` and hands them to
the waiting futures in order (Redis answers in order on one connection, so
any number of commands can be in flight). About 3 µs a call instead of ~55.

Only what the hot path needs: RESP2, EVALSHA with an EVAL fallback, plain
commands. redis-py stays for pub/sub, streams and everything else.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis

pack_command = hiredis.pack_command  # str as UTF-8, bytes as is, int/float as str(); rejects bool and None

Arg = str | bytes | int | float


class RespError(Exception):
    """An error reply from Redis; ``str(error)`` is its message ("NOSCRIPT …")."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a Unix socket instead of host and port
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: ssl.SSLContext | None = None


def parse_url(url: str) -> Address:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS) or
    ``unix:///path/to/socket[?db=N]``, read the way redis-py reads them (so
    one REDIS_URL configures both clients); other query parameters are
    redis-py's and are ignored here."""
    parts = urlparse(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("Redis URL must use redis://, rediss:// or unix://")
    query = {name: values[0] for name, values in parse_qs(parts.query).items() if values}
    username = unquote(parts.username) if parts.username else query.get("username")
    password = unquote(parts.password) if parts.password else query.get("password")
    db = int(query["db"]) if "db" in query else 0
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// Redis URL needs a socket path")
        return Address(path=unquote(parts.path), db=db, username=username, password=password)
    if "db" not in query and parts.path.strip("/"):
        db = int(unquote(parts.path).strip("/"))
    context = None
    if parts.scheme == "rediss":
        context = ssl.create_default_context()
        reqs = query.get("ssl_cert_reqs", "required").lower()
        if reqs in ("none", "optional"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE if reqs == "none" else ssl.CERT_OPTIONAL
    return Address(
        host=unquote(parts.hostname) if parts.hostname else "localhost",
        port=parts.port or 6379,
        db=db,
        username=username,
        password=password,
        ssl=context,
    )


class _Connection(asyncio.Protocol):
    """One socket. Commands queue up and go out together at the end of the
    event-loop turn (one write, not one per command); each reply resolves
    the oldest waiting future."""

    def __init__(self, client: RespClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(replyError=RespError)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        # When the oldest unanswered command was sent, and when the last reply came.
        self._sent: deque[float] = deque()
        self.closed = loop.create_future()
        self._out: list[bytes] = []
        self._watch: asyncio.TimerHandle | None = None

    def send(self, command: tuple[Arg, ...]) -> asyncio.Future[Any]:
        data = pack_command(command)  # type: ignore[arg-type]  # hiredis's stub types a 1-tuple
        if self.transport is None:
            raise ConnectionError("Redis connection lost")
        future = self.loop.create_future()
        out = self._out
        if not out:
            self.loop.call_soon(self._flush)
        out.append(data)
        self._waiters.append(future)
        self._sent.append(self.loop.time())
        return future

    def _watchdog(self) -> None:
        """A Redis that stops answering (frozen, a dead host, a network
        partition) fails the commands waiting on it after ``read_timeout``,
        instead of leaving every request hanging: the connection is dropped
        and the next call opens a new one. One timer per connection, not a
        timeout per command (which would cost the hot path a task each)."""
        timeout = self._client.read_timeout
        if self.transport is None:
            return
        if self._sent and self.loop.time() - self._sent[0] > timeout:
            self._abort(TimeoutError(f"Redis did not answer within {timeout:g} s"))
            return
        self._watch = self.loop.call_later(min(timeout / 4, 0.25), self._watchdog)

    def _flush(self) -> None:
        out = self._out
        self._out = []
        if self.transport is None:
            return  # lost meanwhile: connection_lost failed the futures
        try:
            self.transport.write(b"".join(out))
        except RuntimeError as e:  # closing under us: uvloop raises (asyncio drops the write)
            self._abort(ConnectionError(f"Redis connection lost: {e}"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._watch = self.loop.call_later(min(self._client.read_timeout / 4, 0.25), self._watchdog)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        waiters = self._waiters
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as e:
                self._abort(ConnectionError(f"Redis protocol error: {e}"))
                return
            if reply is False:
                return
            if not waiters:
                self._abort(ConnectionError("Redis sent a reply nobody asked for"))
                return
            future = waiters.popleft()
            self._sent.popleft()
            if future.done():  # its caller was cancelled; the reply is dropped
                continue
            if type(reply) is RespError:
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._forget(self)
        self.transport = None
        self._fail(ConnectionError(f"Redis connection lost: {exc}" if exc else "Redis connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _abort(self, error: Exception) -> None:
        self._client._forget(self)
        transport, self.transport = self.transport, None
        self._fail(error)
        if transport is not None:
            transport.abort()

    def _fail(self, error: Exception) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._sent.clear()
        waiters = self._waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_exception(error)


class RespClient:
    """One pipelined connection, opened on first use and reopened on the next
    call after it is lost. A command in flight when the connection drops
    fails with ``ConnectionError``; it is not retried (it may have run).

    Bound to the event loop it first connects on."""

    def __init__(self, address: Address, *, connect_timeout: float = 1.0, read_timeout: float = 1.0) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        # A command unanswered this long fails (TimeoutError) with every
        # other one in flight on the connection, which is dropped.
        self.read_timeout = read_timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, connect_timeout: float = 1.0, read_timeout: float = 1.0) -> RespClient:
        return cls(parse_url(url), connect_timeout=connect_timeout, read_timeout=read_timeout)

    async def execute(self, *args: Arg) -> Any:
        """Run one command: bytes, int, list or None back; an error reply raises ``RespError``."""
        return await self._send(args)

    def fire(self, *args: Arg) -> None:
        """Send one command without waiting for its reply: it goes out, in
        order, with this loop turn's other commands. A failure is dropped
        (the caller has no use for it; the Redis outage shows elsewhere)."""
        conn = self._conn
        try:
            future = conn.send(args) if conn is not None else asyncio.ensure_future(self._connect_and_send(args))
        except ConnectionError:
            return
        future.add_done_callback(_drop_result)

    def script(self, source: str) -> Script:
        return Script(self, source)

    def _send(self, command: tuple[Arg, ...]) -> Awaitable[Any]:
        conn = self._conn
        if conn is None:
            return self._connect_and_send(command)
        return conn.send(command)

    async def _connect_and_send(self, command: tuple[Arg, ...]) -> Any:
        conn = await self._connect()
        return await conn.send(command)

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent first callers share one connect
            if self._closed:
                raise ConnectionError("RespClient is closed")
            if self._conn is None:
                try:
                    self._conn = await asyncio.wait_for(self._open(), self.connect_timeout)
                except OSError as e:  # TimeoutError included
                    where = self.address.path or f"{self.address.host}:{self.address.port}"
                    raise ConnectionError(f"cannot connect to Redis at {where}: {e!r}") from e
            return self._conn

    async def _open(self) -> _Connection:
        a = self.address
        loop = asyncio.get_running_loop()
        conn = _Connection(self, loop)
        if a.path is not None:
            await loop.create_unix_connection(lambda: conn, a.path)
        else:
            await loop.create_connection(
                lambda: conn, a.host, a.port, ssl=a.ssl, server_hostname=a.host if a.ssl else None
            )
        handshake: list[tuple[Arg, ...]] = []
        if a.username:  # as redis-py: a username alone sends an empty password
            handshake.append(("AUTH", a.username, a.password or ""))
        elif a.password:
            handshake.append(("AUTH", a.password))
        if a.db:
            handshake.append(("SELECT", a.db))
        try:
            for reply in await asyncio.gather(*(conn.send(c) for c in handshake), return_exceptions=True):
                if isinstance(reply, BaseException):
                    raise reply
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        return conn

    def _forget(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None

    async def aclose(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
            await conn.closed


def _drop_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" warning


class Script:
    """A Lua script run by EVALSHA; when Redis does not have it cached yet
    (NOSCRIPT: the script did not run) it is sent once more by EVAL, which
    also caches it."""

    __slots__ = ("_client", "sha", "source")

    def __init__(self, client: RespClient, source: str) -> None:
        self._client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest().encode()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        client = self._client
        try:
            return await client._send((b"EVALSHA", self.sha, len(keys), *keys, *args))
        except RespError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        return await client._send((b"EVAL", self.source, len(keys), *keys, *args))
