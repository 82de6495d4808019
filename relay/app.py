"""The relay's ASGI application: its lifecycle and the dispatch of each
request. OpenAI's and Anthropic's APIs in front of a pool of upstream channels.

Per request: authenticate from the in-process snapshot (relay/access.py),
hold an estimate (relay/holds.py), forward through the shared aiohttp session
(relay/upstream.py: retrying on another key or channel before the first
byte), answer or stream back (relay/answer.py), settle the real cost
(relay/settlement.py). No Django request machinery and no synchronous
database call on this path.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from relay import access, answer, keystate
from relay.call import Call
from relay.db import DbWorker, Quiet
from relay.errors import RelayError, bad_request, model_not_found
from relay.fast_redis import RespClient
from relay.holds import most_usage, prompt_estimate
from relay.http import ClientGone, Receive, Scope, Send, header, read_body, send_response
from relay.i18n import N_, client_language, say
from relay.images import ImageFetcher
from relay.inbound import INBOUND
from relay.journal import Journal
from relay.keypool import STATS_FLUSH_SECONDS, KeyPool
from relay.ledger import Ledger, MemoryLedger, RedisLedger
from relay.metering import hold_micro
from relay.outage import Outage
from relay.ports import Backend, Settled, UsageEvent
from relay.providers.openai import JSON_ENDPOINTS
from relay.redis_names import DEFAULT_PREFIX, RedisNames
from relay.settlement import Settlement
from relay.snapshot import Snapshot
from relay.upstream import Upstream
from relay.validation import validate

log = logging.getLogger("oneproxy.relay")

# Anthropic's Messages API (relay/inbound/anthropic.py), under /v1 only.
MESSAGES_ENDPOINTS = frozenset({"messages", "messages/count_tokens"})
COUNT_TOKENS = "messages/count_tokens"
OPENAI_POST_ENDPOINTS = JSON_ENDPOINTS | {"audio/transcriptions", "audio/translations"}
POST_ENDPOINTS = OPENAI_POST_ENDPOINTS | MESSAGES_ENDPOINTS
# Relay paths served without the /v1 prefix too.
UNPREFIXED = frozenset("/" + e for e in OPENAI_POST_ENDPOINTS) | {"/models"}
# Request headers an Anthropic channel gets from an Anthropic-format client.
ANTHROPIC_HEADERS = (b"anthropic-version", b"anthropic-beta")
BILLING_ENDPOINTS = frozenset({"dashboard/billing/subscription", "dashboard/billing/usage"})
SWITCH_INTERVAL = 0.0005
GC_THRESHOLD = 20_000


@dataclass(frozen=True, slots=True)
class RelayConfig:
    max_body_bytes: int
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
    retry_count: int
    default_max_tokens: int
    redis_url: str | None = None
    redis_prefix: str = DEFAULT_PREFIX  # of every Redis key (relay/redis_names.py)
    poll_interval: float = 1.0
    # Embedded mode's usage journal (relay/journal.py); service mode queues on Redis.
    journal_dir: Path | None = None
    # Seconds a request body may take to arrive (408 after), and how many
    # requests may be receiving one at once (503 server_busy past it).
    body_timeout: float = 30.0
    max_receiving: int = 1024
    # Images fetched by URL for providers that need the bytes (relay/images.py).
    image_fetch_max_bytes: int = 5 * 1024 * 1024
    image_fetch_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    # Connect and read timeout of every Redis call, seconds.
    redis_timeout: float = 1.0
    # The longest a key cools on an upstream's Retry-After.
    max_cooldown: float = keystate.MAX_COOLDOWN


async def listen_ready(
    tasks: list[asyncio.Task[None]], listener: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
) -> None:
    """Start a listener that signals once it is subscribed, and wait for that."""
    ready = asyncio.Event()
    tasks.append(asyncio.create_task(listener(ready)))
    await asyncio.wait_for(ready.wait(), 10)


def is_relay_path(path: str) -> bool:
    return path.startswith("/v1/") or path in UNPREFIXED or path.startswith(("/models/", "/dashboard/billing/"))


class Relay:
    def __init__(self, config: RelayConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.snapshot: Snapshot | None = None
        self.pool = KeyPool(config.max_cooldown)
        self.session: aiohttp.ClientSession | None = None
        self.db: DbWorker | None = None
        self.ledger: Ledger | None = None
        self.upstream: Upstream | None = None
        self.images: ImageFetcher | None = None
        self.settlement: Settlement | None = None
        self._background: list[asyncio.Task[None]] = []
        self._redis: Any = None  # redis.asyncio.Redis in service mode
        self._subscriber: Any = None
        self._fast_redis: RespClient | None = None
        self.redis_outage = Outage("Redis")
        self.receiving = 0  # requests whose body is still arriving
        self.redis_names = RedisNames(config.redis_prefix)
        # Requests in flight; the DB worker's periodic batches wait for none.
        self.quiet = Quiet()

    # --- lifecycle --------------------------------------------------------

    async def startup(self) -> None:
        # When the DB thread holds the GIL, the event loop gets it back after
        # at most this long (Python's default: 5 ms). Together with the DB
        # thread's lower priority this took ~1 ms off the p99 at one
        # connection, at no cost in requests/s at 64 (A/B runs on the bench
        # machine).
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.db = DbWorker(self.backend, self._on_settled, self.quiet)
        if self.config.redis_url:
            import redis.asyncio as aioredis

            # A bounded pool that queues (rather than fails) when every
            # connection is busy: Redis calls are sub-millisecond.
            # Every call is bounded (connect and read): a frozen Redis fails
            # requests with 503 store_unavailable in about a second, instead
            # of hanging them.
            wait = self.config.redis_timeout
            url = self.config.redis_url
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=64, timeout=wait, socket_timeout=wait, socket_connect_timeout=wait
            )
            self._redis = aioredis.Redis(connection_pool=pool)
            # The key-state subscription waits for messages indefinitely: no read timeout.
            self._subscriber = aioredis.Redis.from_url(url, socket_connect_timeout=wait, health_check_interval=30)
            self._fast_redis = RespClient.from_url(url, connect_timeout=wait, read_timeout=wait)
            self.ledger = RedisLedger(self._redis, self._fast_redis, self.db, self.redis_names, self.redis_outage)
            from relay.usage_stream import consume_usage

            self._background.append(
                asyncio.create_task(consume_usage(self._fast_redis, self.redis_names, self.db, self.redis_outage))
            )
            from relay.keybus import listen

            await listen_ready(
                self._background,
                functools.partial(listen, self._subscriber, self.redis_names, self.pool, self.redis_outage),
            )
        else:
            assert self.config.journal_dir is not None, "embedded mode needs a usage journal directory"
            self.ledger = MemoryLedger(self.db)
            await self.db.start_journal(Journal(self.config.journal_dir))
        self._install(await self.db.run(self.backend.load_snapshot))
        # No connection cap (streams must never queue behind each other);
        # Proxies come resolved in the snapshot (relay/outbound.py), so no
        # per-request environment lookups (trust_env would cost two thread hops).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
        )
        self.settlement = Settlement(self.ledger, self.pool)
        self.images = ImageFetcher(self.config.image_fetch_max_bytes, self.config.image_fetch_networks)
        self.upstream = Upstream(
            self.session, self.pool, self.settlement, self.config.retry_count, self._transition, self.images.fetch_all
        )
        self._background.append(asyncio.create_task(self._poll_config()))
        self._background.append(asyncio.create_task(self._flush_key_stats()))
        # Everything loaded so far (Django, the apps, the first snapshot) lives
        # as long as the process: keep it out of the cyclic collector, whose
        # full passes over it took tens of milliseconds each, stalling every
        # request in flight (measured as p99 spikes in docs/BENCHMARKS.md).
        gc.freeze()
        # Requests leave almost no cycles for the collector (under load its
        # passes found none), but the usage events waiting for settlement and
        # other live objects kept the young generation full: with Python's
        # default threshold (700) it was collected every ~14 requests, at
        # ~35 µs of CPU per request at 64 connections (~10%). Cycles are still
        # collected, after GC_THRESHOLD new objects rather than 700.
        gc.set_threshold(GC_THRESHOLD, 10, 10)

    async def shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        if self.images is not None:
            await self.images.close()
        if self.db is not None:
            await self.db.close()
        for client in (self._redis, self._subscriber):
            if client is not None:
                await client.aclose()
        if self._fast_redis is not None:
            await self._fast_redis.aclose()

    async def reload(self) -> None:
        """Load a fresh snapshot now (tests; the poller does this by itself)."""
        assert self.db is not None
        self._install(await self.db.run(self.backend.load_snapshot))

    def _install(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.pool.on_snapshot(snapshot)
        assert self.ledger is not None
        self.ledger.on_snapshot(snapshot)

    async def _flush_key_stats(self) -> None:
        """Write keys' last-used / last-success / latency in batches, not per request."""
        assert self.db is not None
        while True:
            await asyncio.sleep(STATS_FLUSH_SECONDS)
            stats = self.pool.take_stats()
            if stats:
                try:
                    await self.db.run_quietly(self.backend.record_key_stats, stats)
                except Exception:
                    log.exception("writing key usage stats failed")

    def _on_settled(self, events: list[UsageEvent], settled: Settled) -> None:
        assert self.ledger is not None
        self.ledger.on_settled(events, settled)

    async def _poll_config(self) -> None:
        """Reload snapshots when the config version row moves (≤ poll interval)."""
        assert self.db is not None
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                version = await self.db.run_quietly(self.backend.config_version)
                rolled_over = self.snapshot is not None and time.time() >= self.snapshot.next_period_end
                if self.snapshot is None or version != self.snapshot.version or rolled_over:
                    self._install(await self.db.run(self.backend.load_snapshot))
            except Exception:
                log.exception("reloading the relay snapshot failed; keeping the previous one")

    # --- ASGI -------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = "req_" + os.urandom(12).hex()
        path = scope["path"]
        endpoint = path[4:] if path.startswith("/v1/") else path[1:]
        quiet = self.quiet
        quiet.enter()
        try:
            if scope["method"] == "POST" and endpoint in POST_ENDPOINTS:
                await self.proxy(scope, receive, send, request_id, endpoint)
            elif scope["method"] == "GET" and (endpoint == "models" or endpoint.startswith("models/")):
                await self.models(scope, send, request_id, endpoint[7:])
            elif scope["method"] == "GET" and endpoint in BILLING_ENDPOINTS:
                await self.billing(scope, send, request_id, endpoint)
            else:
                raise RelayError(
                    404,
                    N_("Unknown request URL: {method} {path}."),
                    code="unknown_url",
                    params={"method": scope["method"], "path": path},
                )
        except RelayError as exc:
            extra = [(b"retry-after", str(exc.retry_after).encode())] if exc.retry_after is not None else None
            if exc.status in (408, 413) or exc.code == "server_busy":  # the body is never read: close
                extra = [*(extra or []), (b"connection", b"close")]
            await send_response(
                send, exc.status, _error_body(endpoint, exc, request_id, scope), request_id, extra=extra
            )
        except ClientGone:
            return
        except Exception:
            # A bug of ours: log it, answer in the documented shape, never a traceback.
            log.exception("unhandled error in %s %s (%s)", scope["method"], path, request_id)
            error = RelayError(500, N_("Internal error in the gateway."), type="server_error", code="internal_error")
            try:
                await send_response(send, 500, _error_body(endpoint, error, request_id, scope), request_id)
            except Exception:  # noqa: BLE001 - the response may have started already
                pass
        finally:
            quiet.leave()

    # --- GET /v1/models -----------------------------------------------------

    async def models(self, scope: Scope, send: Send, request_id: str, model_id: str) -> None:
        snapshot = self.snapshot
        assert snapshot is not None
        token, user, _ = access.authenticate(snapshot, scope, self.config.trusted_proxies)
        names = [m for m in snapshot.models_for(user.group) if not token.models or m in token.models]
        owners: dict[str, str] = {}
        for (group, model), tiers in snapshot.routes.items():
            if group == user.group:
                owners.setdefault(model, tiers[0][0].type)
        if model_id:
            if model_id not in names:
                raise model_not_found(model_id)
            body = orjson.dumps({"id": model_id, "object": "model", "created": 0, "owned_by": owners[model_id]})
        else:
            data = [{"id": m, "object": "model", "created": 0, "owned_by": owners[m]} for m in names]
            body = orjson.dumps({"object": "list", "data": data})
        await send_response(send, 200, body, request_id)

    # --- GET /dashboard/billing/*: OpenAI's legacy billing shape ---------------

    async def billing(self, scope: Scope, send: Send, request_id: str, endpoint: str) -> None:
        """What dashboards such as ChatGPT-Next-Web read: a token with a cap
        shows its cap and what it used; an uncapped one shows the owner's
        balance (hard limit = balance + used, so limit − usage = balance)."""
        assert self.snapshot is not None and self.ledger is not None
        token, user, _ = access.authenticate(self.snapshot, scope, self.config.trusted_proxies)
        balance, used = await self.ledger.view(user, token)
        limit = token.quota if token.quota is not None else max(balance, 0) + used
        if endpoint.endswith("subscription"):
            body = {
                "object": "billing_subscription",
                "has_payment_method": True,
                "soft_limit_usd": limit / 1_000_000,
                "hard_limit_usd": limit / 1_000_000,
                "system_hard_limit_usd": limit / 1_000_000,
                "access_until": int(token.expires_at or 0),
            }
        else:
            body = {"object": "list", "total_usage": used / 10_000}  # in cents
        await send_response(send, 200, orjson.dumps(body), request_id)

    # --- POST: the proxy ----------------------------------------------------

    async def proxy(self, scope: Scope, receive: Receive, send: Send, request_id: str, endpoint: str) -> None:
        started = time.monotonic()
        snapshot = self.snapshot
        assert snapshot is not None and self.ledger is not None
        assert self.upstream is not None and self.settlement is not None
        token, user, pinned = access.authenticate(snapshot, scope, self.config.trusted_proxies)
        if self.receiving >= self.config.max_receiving:
            # Bodies still arriving past this count are slow or stalled
            # clients; each holds a connection for up to body_timeout.
            raise RelayError(
                503, N_("Too many requests are still sending their bodies; retry shortly."), type="server_error",
                code="server_busy", retry_after=1,
            )  # fmt: skip
        self.receiving += 1
        try:
            raw = await read_body(scope, receive, self.config.max_body_bytes, self.config.body_timeout)
        finally:
            self.receiving -= 1
        content_type = (header(scope, b"content-type") or b"application/json").decode("latin-1")
        payload: dict[str, Any] | None = None
        if endpoint in JSON_ENDPOINTS or endpoint in MESSAGES_ENDPOINTS:
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise bad_request(
                    N_("We could not parse the JSON body of your request."), code="invalid_json"
                ) from None
            if not isinstance(payload, dict):
                raise bad_request(N_("The request body must be a JSON object."), code="invalid_json")
            validate(endpoint, payload)
            model = payload.get("model")
            stream = payload.get("stream") is True
        else:
            model = multipart_field(raw, content_type, "model")
            stream = False
        if not isinstance(model, str) or not model:
            raise bad_request(N_("You must provide a model parameter."), param="model", code="missing_model")
        access.check_model(token, model)
        tiers = access.route(snapshot, user, model, pinned)
        inbound = INBOUND[inbound_format(endpoint)]
        call = Call(
            request_id, started, snapshot, inbound, endpoint, token, user, model, raw, payload, content_type, stream
        )
        if inbound.format == "anthropic":
            call.client_headers = {
                name.decode(): value.decode("latin-1") for name in ANTHROPIC_HEADERS if (value := header(scope, name))
            }
            if endpoint == COUNT_TOKENS:
                native = tuple(t for t in (tuple(c for c in tier if c.protocol == "anthropic") for tier in tiers) if t)
                if not native:
                    # No Anthropic channel to ask: counted here, free, nothing sent upstream.
                    body = orjson.dumps({"input_tokens": self.settlement.estimate(call, "").prompt_tokens})
                    await send_response(send, 200, body, request_id)
                    return
                tiers = native
        price = access.price(snapshot, model, tiers[0][0])
        cap = max(channel.max_tokens for tier in tiers for channel in tier)
        most = most_usage(endpoint, payload, raw, prompt_estimate(payload, raw), cap)
        amount = hold_micro(most, price, user.group_multiplier, user.team_multiplier)
        holding = time.monotonic()
        call.hold = await self.ledger.hold(user, token, amount)
        call.ledger += time.monotonic() - holding
        try:
            response = await self.upstream.forward(call, tiers)
            if stream:
                await answer.stream(call, response, receive, send, self.settlement)
            else:
                await answer.respond(call, response, send, self.settlement)
        except BaseException as exc:
            # Whatever failed after the hold (an upstream, the client, a bug
            # of ours), the hold never outlives the request.
            if call.hold is not None:
                await self.settlement.finish_failed(call, exc)
            raise

    async def _transition(self, transition: keystate.Transition) -> None:
        """Persist a key's new state and tell the other relay processes
        before retrying (a rare path: one Redis round trip is worth it)."""
        log.warning(
            "key %s -> %s (%s): %s", transition.key_id, transition.state, transition.reason, transition.message[:200]
        )
        assert self.db is not None
        self.db.submit_key_transition(transition)
        if self._redis is not None:
            from relay.keybus import publish

            await publish(self._redis, self.redis_names, transition)


def inbound_format(endpoint: str) -> str:
    """The format a client speaks on this endpoint."""
    return "anthropic" if endpoint.startswith("messages") else "openai"


def _error_body(endpoint: str, error: RelayError, request_id: str, scope: Scope) -> bytes:
    inbound = INBOUND.get(inbound_format(endpoint), INBOUND["openai"])
    language = client_language(header(scope, b"accept-language"))
    message = say(
        N_("{message} (request id: {request_id})"),
        {"message": error.said_in(language), "request_id": request_id},
        language,
    )
    return inbound.error_body(error.status, message, error.type, error.code, error.param)


def multipart_field(body: bytes, content_type: str, name: str) -> str | None:
    """One text field of a multipart/form-data body (the model of an audio upload)."""
    marker = "boundary="
    if marker not in content_type:
        return None
    boundary = content_type.split(marker, 1)[1].split(";")[0].strip().strip('"').encode()
    needle = f'name="{name}"'.encode()
    for part in body.split(b"--" + boundary):
        head, sep, value = part.partition(b"\r\n\r\n")
        if sep and needle in head and b"filename=" not in head:
            return value.rstrip(b"\r\n").decode("utf-8", "replace")
    return None
