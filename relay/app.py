"""The relay's ASGI application: OpenAI-compatible endpoints in front of a
pool of upstream channels.

Per request: authenticate from the in-process snapshot, hold an estimate,
forward through the shared aiohttp session (retrying on another key or
channel before the first byte), stream the answer back, settle the real cost.
No Django request machinery and no synchronous database call on this path.
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

from relay import keystate, relay_keys, tokenizer
from relay.db import DbWorker, Quiet
from relay.errors import RelayError, bad_request, forbidden, mask_secrets, model_not_found, unauthorized
from relay.fast_redis import RespClient
from relay.http import ClientGone, Receive, Scope, Send, client_ip, header, read_body, send_response
from relay.journal import Journal
from relay.keypool import STATS_FLUSH_SECONDS, KeyPool
from relay.ledger import Hold, Ledger, MemoryLedger, RedisLedger
from relay.metering import Usage, cost_micro, hold_micro, trailing_usage, usage_from_openai
from relay.outage import Outage
from relay.ports import Backend, Settled, UsageEvent
from relay.providers import openai as openai_adapter
from relay.redis_names import DEFAULT_PREFIX, RedisNames
from relay.routing import candidate_channels
from relay.snapshot import ChannelSnap, KeySnap, Snapshot, TokenSnap, UserSnap
from relay.validation import validate

log = logging.getLogger("oneproxy.relay")

POST_ENDPOINTS = openai_adapter.JSON_ENDPOINTS | {"audio/transcriptions", "audio/translations"}
# Relay paths served without the /v1 prefix too.
UNPREFIXED = frozenset("/" + e for e in POST_ENDPOINTS) | {"/models"}
BILLING_ENDPOINTS = frozenset({"dashboard/billing/subscription", "dashboard/billing/usage"})
# Prompts up to this many characters are counted with the tokenizer for the
# hold; longer ones are estimated at 3 characters a token (cheap, generous).
TOKENIZE_UP_TO = 16_000
SWITCH_INTERVAL = 0.0005
GC_THRESHOLD = 20_000
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
# Audio uploads (transcriptions, translations) are held for their longest
# plausible duration: the upload's size at 16 kbit/s, the lowest bitrate
# speech is commonly encoded at; and, for models that bill audio as tokens,
# generous token rates per second of audio in and text out.
AUDIO_UPLOADS = frozenset({"audio/transcriptions", "audio/translations"})
AUDIO_BYTES_PER_SECOND = 2_000
AUDIO_BYTES_PER_SECOND_TYPICAL = 16_000
AUDIO_TOKENS_PER_SECOND = 50
TEXT_TOKENS_PER_SECOND = 10
# The usage row of a request whose relay died after sending it upstream.
LOST_ERROR = "the relay process ended before this request settled; charged at the hold's estimate"
# How much of a stream is kept to count tokens when the upstream reports none.
DELIVERED_KEEP = 1 << 20


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


@functools.lru_cache(maxsize=256)
def _timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    """No total timeout (streams may run for minutes); connect and per-read bounds."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


class UpstreamFailure(Exception):
    """One attempt failed before anything reached the client."""

    def __init__(self, status: int, verdict: keystate.Verdict, *, reached: bool = True, timeout: bool = False) -> None:
        super().__init__(verdict.message)
        self.status = status
        self.verdict = verdict
        self.reached = reached
        self.timeout = timeout


@dataclass(slots=True)
class Call:
    """One client request on its way through the relay."""

    request_id: str
    started: float
    endpoint: str
    token: TokenSnap
    user: UserSnap
    model: str
    raw: bytes
    payload: dict[str, Any] | None
    content_type: str
    stream: bool
    hold: Hold | None = None
    attempts: int = 0
    reached: bool = False
    channel: ChannelSnap | None = None
    key: KeySnap | None = None
    upstream: float = 0.0  # seconds spent waiting on upstreams, every attempt
    ledger: float = 0.0  # seconds spent in the ledger: the hold, the settlement


class Relay:
    def __init__(self, config: RelayConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.snapshot: Snapshot | None = None
        self.pool = KeyPool(config.max_cooldown)
        self.session: aiohttp.ClientSession | None = None
        self.db: DbWorker | None = None
        self.ledger: Ledger | None = None
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
                raise RelayError(404, f"Unknown request URL: {scope['method']} {path}.", code="unknown_url")
        except RelayError as exc:
            extra = [(b"retry-after", str(exc.retry_after).encode())] if exc.retry_after is not None else None
            if exc.status in (408, 413) or exc.code == "server_busy":  # the body is never read: close
                extra = [*(extra or []), (b"connection", b"close")]
            await send_response(send, exc.status, exc.body(request_id), request_id, extra=extra)
        except ClientGone:
            return
        except Exception:
            # A bug of ours: log it, answer in the documented shape, never a traceback.
            log.exception("unhandled error in %s %s (%s)", scope["method"], path, request_id)
            error = RelayError(500, "Internal error in the gateway.", type="server_error", code="internal_error")
            try:
                await send_response(send, 500, error.body(request_id), request_id)
            except Exception:  # noqa: BLE001 - the response may have started already
                pass
        finally:
            quiet.leave()

    # --- auth and access ----------------------------------------------------

    def authenticate(self, scope: Scope) -> tuple[TokenSnap, UserSnap, int | None]:
        raw = header(scope, b"authorization")
        if raw is not None:
            scheme, _, key = raw.decode("latin-1").partition(" ")
            key = key.strip() if scheme.lower() == "bearer" else ""
        else:
            key = (header(scope, b"x-api-key") or b"").decode("latin-1").strip()
        if not key:
            raise unauthorized("You didn't provide an API key. Send 'Authorization: Bearer sk-…'.")
        key, pinned = relay_keys.split_pinned(key)
        assert self.snapshot is not None
        token = self.snapshot.tokens.get(relay_keys.hash_key(key))
        user = self.snapshot.users.get(token.user_id) if token else None
        if token is None or user is None:
            raise unauthorized("Incorrect API key provided.")
        if not token.active or not user.active:
            raise unauthorized("This API key is disabled.")
        if token.expires_at is not None and token.expires_at <= time.time():
            raise unauthorized("This API key has expired.")
        if pinned is not None and not user.is_operator:
            raise forbidden("Only operators may pin a channel (sk-KEY-CHANNELID).", code="channel_pin_forbidden")
        if token.subnets:
            ip = client_ip(scope, self.config.trusted_proxies)
            if ip is None or not any(ip.version == net.version and ip in net for net in token.subnets):
                raise forbidden(f"Requests from {ip} are not allowed for this API key.", code="ip_not_allowed")
        return token, user, pinned

    def check_model(self, token: TokenSnap, model: str) -> None:
        if token.models and model not in token.models:
            raise forbidden(f"This API key may not use the model '{model}'.", code="model_not_allowed")

    # --- GET /v1/models -----------------------------------------------------

    async def models(self, scope: Scope, send: Send, request_id: str, model_id: str) -> None:
        token, user, _ = self.authenticate(scope)
        assert self.snapshot is not None
        names = [m for m in self.snapshot.models_for(user.group) if not token.models or m in token.models]
        owners: dict[str, str] = {}
        for (group, model), tiers in self.snapshot.routes.items():
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
        token, user, _ = self.authenticate(scope)
        assert self.ledger is not None
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
        token, user, pinned = self.authenticate(scope)
        if self.receiving >= self.config.max_receiving:
            # Bodies still arriving past this count are slow or stalled
            # clients; each holds a connection for up to body_timeout.
            raise RelayError(
                503, "Too many requests are still sending their bodies; retry shortly.", type="server_error",
                code="server_busy", retry_after=1,
            )  # fmt: skip
        self.receiving += 1
        try:
            raw = await read_body(scope, receive, self.config.max_body_bytes, self.config.body_timeout)
        finally:
            self.receiving -= 1
        content_type = (header(scope, b"content-type") or b"application/json").decode("latin-1")
        payload: dict[str, Any] | None = None
        if endpoint in openai_adapter.JSON_ENDPOINTS:
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise bad_request("We could not parse the JSON body of your request.", code="invalid_json") from None
            if not isinstance(payload, dict):
                raise bad_request("The request body must be a JSON object.", code="invalid_json")
            validate(endpoint, payload)
            model = payload.get("model")
            stream = payload.get("stream") is True
        else:
            model = multipart_field(raw, content_type, "model")
            stream = False
        if not isinstance(model, str) or not model:
            raise bad_request("You must provide a model parameter.", param="model", code="missing_model")
        self.check_model(token, model)
        tiers = self.route(user, model, pinned)
        call = Call(request_id, started, endpoint, token, user, model, raw, payload, content_type, stream)
        price = self._price(model, tiers[0][0])
        assert self.ledger is not None
        most = self._most_usage(call, prompt_estimate(payload, model, raw))
        amount = hold_micro(most, price, user.group_multiplier, user.team_multiplier)
        holding = time.monotonic()
        call.hold = await self.ledger.hold(user, token, amount)
        call.ledger += time.monotonic() - holding
        try:
            response = await self.forward(call, tiers)
            if stream:
                await self.stream(call, response, scope, receive, send)
            else:
                await self.respond(call, response, send)
        except BaseException as exc:
            # Whatever failed after the hold (an upstream, the client, a bug
            # of ours), the hold never outlives the request.
            if call.hold is not None:
                await self._finish_failed(call, exc)
            raise

    def route(self, user: UserSnap, model: str, pinned: int | None) -> tuple[tuple[ChannelSnap, ...], ...]:
        assert self.snapshot is not None
        if pinned is not None:
            channel = self.snapshot.channels.get(pinned)
            if channel is None:
                raise RelayError(404, f"Channel {pinned} does not exist or is disabled.", code="channel_not_found")
            return ((channel,),)
        tiers = self.snapshot.routes.get((user.group, model))
        if not tiers:
            raise model_not_found(model)
        return tiers

    def _price(self, model: str, channel: ChannelSnap):  # type: ignore[no-untyped-def]
        assert self.snapshot is not None
        price = self.snapshot.price_for(model, channel)
        if price is None:
            raise forbidden(f"The model '{model}' has no price set; ask an operator.", code="model_not_priced")
        return price

    def _most_usage(self, call: Call, prompt: int) -> Usage:
        """The most a request can use, for its hold: the prompt estimate, the
        completion cap times every multiplier of output (``n``, ``best_of``),
        the images asked for, and for an audio upload its longest plausible
        duration."""
        payload = call.payload or {}
        if call.endpoint in AUDIO_UPLOADS:
            seconds = max(1, len(call.raw) // AUDIO_BYTES_PER_SECOND)
            # Duration-priced models bill the seconds, token-priced ones audio
            # tokens in and text out: the hold covers either.
            return Usage(
                prompt_tokens=seconds * AUDIO_TOKENS_PER_SECOND,
                audio_tokens=seconds * AUDIO_TOKENS_PER_SECOND,
                completion_tokens=seconds * TEXT_TOKENS_PER_SECOND,
                audio_ms=seconds * 1000,
            )
        outputs = max(_positive(payload.get("n")), _positive(payload.get("best_of")))
        if call.endpoint == "images/generations":
            # gpt-image models also bill output tokens; per-image prices the rest.
            return Usage(
                prompt_tokens=prompt, completion_tokens=self.config.default_max_tokens * outputs, images=outputs
            )
        if call.endpoint not in ("chat/completions", "completions", "responses"):
            return Usage(prompt_tokens=prompt)
        cap = self.config.default_max_tokens
        for field in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
            value = payload.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                cap = value
                break
        return Usage(prompt_tokens=prompt, completion_tokens=cap * outputs)

    async def forward(self, call: Call, tiers: tuple[tuple[ChannelSnap, ...], ...]) -> aiohttp.ClientResponse:
        """Try keys, then channels (lower tiers only after higher ones are used
        up), until one answers 2xx: at most retry_count retries."""
        last: UpstreamFailure | None = None
        max_attempts = self.config.retry_count + 1
        for channel in candidate_channels(tiers):
            for key in self.pool.keys_in_order(channel):
                if call.attempts >= max_attempts:
                    break
                call.attempts += 1
                call.channel, call.key = channel, key
                if call.attempts == 1:
                    self._mark_sent(call)
                try:
                    response = await self.attempt(call, channel, key)
                    call.reached = True
                    return response
                except UpstreamFailure as failure:
                    call.reached = call.reached or failure.reached
                    last = failure
                    self.pool.used(key, ok=False, latency_ms=None)
                    await self._transition(self.pool.judge(key, failure.verdict))
                    if failure.verdict.fault == "request":
                        raise self._client_error(failure) from None
        if last is not None:
            raise self._client_error(last)
        channels = [c for tier in tiers for c in tier]
        wait = self.pool.soonest_cooldown(channels, time.time())
        if wait is not None:
            raise RelayError(
                429,
                "Every key for this model is cooling down; retry later.",
                type="rate_limit_error",
                code="keys_cooling",
                retry_after=max(1, int(wait + 0.999)),
            )
        raise RelayError(
            503,
            f"No channel has a usable key for the model '{call.model}'.",
            type="server_error",
            code="no_available_key",
        )

    def _mark_sent(self, call: Call) -> None:
        """Record with the hold that the request goes upstream now: if this
        process dies before settling, the request is charged at the hold's
        estimate (the upstream may have done and billed the work), and a
        hold without this record is only released."""
        assert self.ledger is not None and call.hold is not None
        event = self._event(call, Usage(estimated=True), call.hold.amount, 0, LOST_ERROR)
        event.held, event.kind = call.hold.amount, "sent"
        self.ledger.sent(call.hold, event)

    async def _transition(self, transition: keystate.Transition | None) -> None:
        """Persist a key's new state and tell the other relay processes
        before retrying (a rare path: one Redis round trip is worth it)."""
        if transition is None:
            return
        log.warning(
            "key %s -> %s (%s): %s", transition.key_id, transition.state, transition.reason, transition.message[:200]
        )
        assert self.db is not None
        self.db.submit_key_transition(transition)
        if self._redis is not None:
            from relay.keybus import publish

            await publish(self._redis, self.redis_names, transition)

    def _client_error(self, failure: UpstreamFailure) -> RelayError:
        verdict = failure.verdict
        if verdict.fault == "request":
            return RelayError(failure.status, f"Upstream error: {verdict.message}", code="upstream_error")
        if verdict.fault == "cool":
            return RelayError(
                429,
                f"Upstream rate limit: {verdict.message}",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                retry_after=max(1, int(min(verdict.retry_after or 1, self.pool.breaker.max_cooldown) + 0.999)),
            )
        if failure.timeout:
            return RelayError(
                504, f"Upstream timed out: {verdict.message}", type="server_error", code="upstream_timeout"
            )
        return RelayError(
            502,
            f"Upstream error (status {failure.status}): {verdict.message}",
            type="server_error",
            code="upstream_error",
        )

    async def attempt(self, call: Call, channel: ChannelSnap, key: KeySnap) -> aiohttp.ClientResponse:
        body = openai_adapter.prepare_body(channel, call.endpoint, call.raw, call.payload, call.model, call.stream)
        sent = time.monotonic()
        try:
            response, error_body = await self._exchange(call, channel, key, body)
        finally:
            call.upstream += time.monotonic() - sent
        if error_body is None:
            return response
        assert self.snapshot is not None
        verdict = keystate.judge(
            response.status, error_body, response.headers, key.secret, self.snapshot.disable_phrases
        )
        raise UpstreamFailure(response.status, verdict, timeout=response.status in (408, 504))

    async def _exchange(
        self, call: Call, channel: ChannelSnap, key: KeySnap, body: bytes
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """The network part of an attempt (Server-Timing's ``upstream``): the
        answer, with the body of an error answer read and released."""
        assert self.session is not None
        read_timeout = channel.idle_timeout if call.stream else channel.first_byte_timeout
        request = self.session.post(
            openai_adapter.upstream_url(channel, call.endpoint),
            data=body,
            headers=openai_adapter.upstream_headers(channel, key.secret, call.content_type),
            timeout=_timeout(channel.connect_timeout, read_timeout),
            proxy=channel.proxy_url,
        )
        try:
            if call.stream:
                # Streams read with the idle timeout, so the first byte gets its own deadline.
                async with asyncio.timeout(channel.connect_timeout + channel.first_byte_timeout):
                    response = await request
            else:
                # sock_read bounds the wait for the first byte and every read after it.
                response = await request
        except TimeoutError:
            verdict = keystate.Verdict("transient", "timeout", "no response in time")
            raise UpstreamFailure(504, verdict, reached=False, timeout=True) from None
        except aiohttp.ClientError as exc:
            verdict = keystate.Verdict("transient", "connect_error", f"cannot reach upstream: {type(exc).__name__}")
            raise UpstreamFailure(502, verdict, reached=False) from None
        if response.status < 400:
            if not call.stream:
                # A whole answer is read here, inside the attempt: nothing has
                # reached the client yet, so a reset or a stall mid-body is
                # retried on another key like any failure before the first byte.
                try:
                    await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    response.release()
                    verdict = keystate.Verdict(
                        "transient", "body_broken", f"upstream broke off its answer ({type(exc).__name__})"
                    )
                    raise UpstreamFailure(502, verdict, timeout=isinstance(exc, TimeoutError)) from None
            return response, None
        try:
            return response, await response.read()
        except (aiohttp.ClientError, TimeoutError):
            return response, b""
        finally:
            response.release()

    # --- answering ----------------------------------------------------------

    async def respond(self, call: Call, response: aiohttp.ClientResponse, send: Send) -> None:
        data = await response.read()  # read (and timed) in the attempt already: aiohttp keeps it
        for upstream_name, client_name in _model_renames(call):
            data = data.replace(upstream_name, client_name)
        content_type = response.headers.get("Content-Type", "application/json").encode("latin-1")
        usage = self._usage_from_body(call, data, content_type)
        await self._settle(call, usage, 200)
        await send_response(send, 200, data, call.request_id, content_type=content_type, extra=[server_timing(call)])

    def _usage_from_body(self, call: Call, data: bytes, content_type: bytes) -> Usage:
        json_body = content_type.startswith(b"application/json")
        if json_body and call.endpoint != "images/generations":  # images are billed by count: that needs the body
            usage = usage_from_openai(trailing_usage(data))
            if usage is not None:
                return usage
        parsed = None
        if json_body:
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
        usage = usage_from_openai(parsed.get("usage")) if isinstance(parsed, dict) else None
        if usage is None and (content_type.startswith(b"text/event-stream") or data.lstrip()[:5] == b"data:"):
            # A stream where a whole answer was expected (an upstream that
            # streams anyway): billed for what it carried, as a stream is.
            state = _StreamState(client_wants_usage=True)
            for event in data.replace(b"\r\n", b"\n").split(b"\n\n"):
                state.take(event + b"\n\n")
            return state.usage or self._estimate(call, completion_text=state.delivered_text())
        if usage is None:
            text = _answer_text(parsed) if parsed is not None else ""
            if not text and not json_body and content_type.startswith(b"text/"):
                text = data.decode("utf-8", "replace")  # a transcription as text, srt or vtt
            usage = self._estimate(call, completion_text=text)
        if call.endpoint == "images/generations" and isinstance(parsed, dict):
            usage.images = len(parsed.get("data") or ())
        return usage

    def _estimate(self, call: Call, completion_text: str) -> Usage:
        """Count tokens locally: the upstream reported no usage."""
        payload = call.payload or {}
        if call.endpoint == "moderations":
            return Usage(estimated=True)
        if call.endpoint in AUDIO_UPLOADS:
            # No duration reported (a text or srt answer): the upload's size at
            # a typical speech bitrate (128 kbit/s), at least a second.
            seconds = max(1, len(call.raw) // AUDIO_BYTES_PER_SECOND_TYPICAL)
            completion = tokenizer.count_tokens(completion_text, call.model)
            return Usage(audio_ms=seconds * 1000, completion_tokens=completion, estimated=True)
        if isinstance(payload.get("messages"), list):
            prompt = tokenizer.count_chat_prompt(payload["messages"], call.model)
        else:
            text = payload.get("prompt", payload.get("input", ""))
            if isinstance(text, list):
                text = " ".join(t for t in text if isinstance(t, str))
            prompt = tokenizer.count_tokens(text if isinstance(text, str) else "", call.model)
        return Usage(
            prompt_tokens=prompt, completion_tokens=tokenizer.count_tokens(completion_text, call.model), estimated=True
        )

    async def stream(
        self, call: Call, response: aiohttp.ClientResponse, scope: Scope, receive: Receive, send: Send
    ) -> None:
        state = _StreamState(
            client_wants_usage=bool(((call.payload or {}).get("stream_options") or {}).get("include_usage")),
            secret=call.key.secret if call.key is not None else "",
            renames=_model_renames(call),
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*SSE_HEADERS, (b"x-request-id", call.request_id.encode()), server_timing(call)],
            }
        )
        pump = asyncio.create_task(self._pump(response, send, state))
        watch = asyncio.create_task(_wait_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not pump.done():
                pump.cancel()  # client gone: stop reading upstream
                state.client_gone = True
                await asyncio.gather(pump, return_exceptions=True)
            watch.cancel()
            response.close()
        usage = state.usage or self._estimate(call, completion_text=state.delivered_text())
        failed = state.error is not None
        try:
            await self._settle(
                call, usage, 200, error=state.error or ("client disconnected" if state.client_gone else "")
            )
        except RelayError as exc:  # Redis gone at the end of a stream: the answer is sent, end it
            state.error = state.error or exc.message
        if state.client_gone:
            return
        if failed:
            err = {
                "error": {
                    "message": f"Upstream stream failed: {state.error} (request id: {call.request_id})",
                    "type": "server_error",
                    "code": "upstream_stream_error",
                }
            }
            tail = b"data: " + orjson.dumps(err) + b"\n\n"
        else:
            # [DONE] as the upstream sent it; a Responses stream ends on its
            # terminal event alone, as OpenAI's does.
            tail = b"data: [DONE]\n\n" if state.done_marker else b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _pump(self, response: aiohttp.ClientResponse, send: Send, state: _StreamState) -> None:
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                out = []
                while (end := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[: end + 2], buffer[end + 2 :]
                    sent = state.take(event)
                    if sent is not None:
                        out.append(sent)
                if out:
                    await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
            if not state.done:
                state.error = "upstream closed the stream early"
        except TimeoutError:
            state.error = "upstream stopped sending (idle timeout)"
        except aiohttp.ClientError as exc:
            state.error = f"upstream connection broke ({type(exc).__name__})"

    # --- settlement ---------------------------------------------------------

    async def _settle(self, call: Call, usage: Usage, status: int, error: str = "") -> None:
        assert self.ledger is not None and call.hold is not None and call.channel is not None
        price = self._price(call.model, call.channel)
        cost = cost_micro(usage, price, call.user.group_multiplier, call.user.team_multiplier)
        event = self._event(call, usage, cost, status, error)
        if call.key is not None:
            tokens = usage.prompt_tokens + usage.completion_tokens
            self.pool.used(call.key, ok=True, latency_ms=event.latency_ms, tokens=tokens)
        settling = time.monotonic()
        await self.ledger.settle(call.hold, event)
        call.ledger += time.monotonic() - settling
        call.hold = None

    def _event(self, call: Call, usage: Usage, cost: int, status: int, error: str) -> UsageEvent:
        return UsageEvent(
            request_id=call.request_id,
            created_at=time.time(),
            user_id=call.user.id,
            token_id=call.token.id,
            endpoint=call.endpoint,
            model=call.model,
            upstream_model=call.channel.upstream_model(call.model) if call.channel else call.model,
            channel_id=call.channel.id if call.channel else None,
            key_id=call.key.id if call.key else None,
            usage=usage,
            cost=cost,
            group_multiplier=str(call.user.group_multiplier),
            team_multiplier=str(call.user.team_multiplier),
            attempts=call.attempts,
            status=status,
            latency_ms=int((time.monotonic() - call.started) * 1000),
            stream=call.stream,
            error=mask_secrets(error)[:2000] if error else "",
        )

    async def _finish_failed(self, call: Call, exc: BaseException) -> None:
        """Nothing reached the client: release the hold; if an upstream
        answered, still log the request (at no cost)."""
        if call.hold is None or self.ledger is None:
            return
        if call.reached and call.channel is not None:
            status = exc.status if isinstance(exc, RelayError) else 502
            message = exc.message if isinstance(exc, RelayError) else type(exc).__name__
            await self.ledger.settle(call.hold, self._event(call, Usage(), 0, status, message))
        else:
            await self.ledger.release(call.hold)
        call.hold = None


# A Responses API stream ends on one of these events (no [DONE]).
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _model_renames(call: Call) -> tuple[tuple[bytes, bytes], ...]:
    """With model mapping, the upstream's model name as it appears in JSON
    (compact and spaced) and the client's model name to put back: the client
    sees the model it asked for; the usage row keeps both."""
    channel = call.channel
    if channel is None:
        return ()
    upstream = channel.upstream_model(call.model)
    if upstream == call.model:
        return ()
    theirs, ours = orjson.dumps(upstream), orjson.dumps(call.model)
    return ((b'"model":' + theirs, b'"model":' + ours), (b'"model": ' + theirs, b'"model": ' + ours))


class _StreamState:
    __slots__ = (
        "client_gone",
        "client_wants_usage",
        "delivered",
        "done",
        "done_marker",
        "error",
        "renames",
        "secret",
        "usage",
    )

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
        self.client_gone = False
        self.delivered = bytearray()

    def take(self, event: bytes) -> bytes | None:
        """Look at one SSE event; what to send of it (None: nothing). An error
        event, or any event quoting the key, is sent with keys masked."""
        if event.startswith(b"data: [DONE]"):
            self.done = self.done_marker = True
            return None  # sent last, after the usage event is queued
        if b'"error"' in event or (self.secret and self.secret in event):
            event = _mask_event(event, self.secret)
        for upstream_name, client_name in self.renames:
            event = event.replace(upstream_name, client_name)
        if b"response." in event[:64] and _event_type(event) in TERMINAL_EVENTS:
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

    def delivered_text(self) -> str:
        parts = []
        for line in bytes(self.delivered).split(b"\n"):
            if not line.startswith(b"data: {"):
                continue
            try:
                parts.append(_answer_text(orjson.loads(line[6:])))
            except orjson.JSONDecodeError:
                continue
        return "".join(parts)


def _event_type(event: bytes) -> str | None:
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


def _mask_event(event: bytes, secret: bytes) -> bytes:
    text = event.decode("utf-8", "replace")
    if secret:
        text = text.replace(secret.decode(), "***")
    return mask_secrets(text).encode()


def server_timing(call: Call) -> tuple[bytes, bytes]:
    """The W3C ``Server-Timing`` header, in milliseconds since the request
    began: ``ledger``, the hold and the settlement (Redis round trips in
    service mode; in memory, plus the journal write, in embedded mode);
    ``upstream``, waiting on upstreams (connecting, the answer's headers and,
    before a whole answer is sent, its body); ``gateway``, the rest: the
    relay's own work. Clients and the benchmark read where a request's time
    went."""
    upstream, ledger = call.upstream * 1000, call.ledger * 1000
    gateway = (time.monotonic() - call.started) * 1000 - upstream - ledger
    return b"server-timing", b"gateway;dur=%.3f, ledger;dur=%.3f, upstream;dur=%.3f" % (gateway, ledger, upstream)


def _answer_text(parsed: object) -> str:
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


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def _positive(value: object) -> int:
    """A multiplier of output as a client sent it (``n``, ``best_of``): 1 unless a positive int."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def prompt_estimate(payload: dict[str, Any] | None, model: str, raw: bytes) -> int:
    """Prompt tokens to hold for: counted with the tokenizer when the prompt is
    small, else characters / 3 (never under the real count for common text)."""
    if payload is None:
        return 0
    messages = payload.get("messages")
    text = payload.get("prompt", payload.get("input"))
    if isinstance(messages, list):
        try:
            size = sum(
                len(m.get("content") or "")
                if isinstance(m, dict) and isinstance(m.get("content"), str)
                else len(orjson.dumps(m))
                for m in messages
            )
        except orjson.JSONEncodeError:  # nested deeper than orjson writes: count the raw body
            return len(raw) // 3
        if size <= TOKENIZE_UP_TO:
            return tokenizer.count_chat_prompt(messages, model) + 1
        return size // 3 + 4 * len(messages)
    if isinstance(text, str) and len(text) <= TOKENIZE_UP_TO:
        return tokenizer.count_tokens(text, model) + 1
    return len(raw) // 3


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
