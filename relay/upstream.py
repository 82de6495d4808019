"""Upstream I/O: attempts on keys and channels until one answers, retries
before the first byte, and what a failed answer means for its key.

The adapter of the channel's type (relay/providers/) builds each request and
judges each error; this module sends them, once, for every adapter.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from relay import keystate
from relay.access import Tiers
from relay.call import Call, UpstreamFailure
from relay.errors import RelayError, bad_request
from relay.i18n import N_
from relay.keypool import KeyPool
from relay.providers import PROVIDERS
from relay.providers.base import ConversionError, Provider, UpstreamRequest
from relay.routing import candidate_channels
from relay.settlement import Settlement
from relay.snapshot import ChannelSnap, KeySnap

log = logging.getLogger("oneproxy.relay")

# What a client of each inbound format may have converted for an upstream of
# another format: the chat endpoint of each.
CONVERTIBLE = frozenset({"chat/completions", "messages"})


@functools.lru_cache(maxsize=256)
def _timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    """No total timeout (streams may run for minutes); connect and per-read bounds."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


ImageFetcher = Callable[[Call, list[str]], Awaitable[None]]


class Upstream:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        pool: KeyPool,
        settlement: Settlement,
        retry_count: int,
        on_transition: Callable[[keystate.Transition], Awaitable[None]],
        fetch_images: ImageFetcher,
    ) -> None:
        self.session = session
        self.pool = pool
        self.settlement = settlement
        self.retry_count = retry_count
        self.on_transition = on_transition
        self.fetch_images = fetch_images

    async def forward(self, call: Call, tiers: Tiers) -> aiohttp.ClientResponse:
        """Try keys, then channels (lower tiers only after higher ones are used
        up), until one answers 2xx: at most retry_count retries."""
        last: UpstreamFailure | None = None
        max_attempts = self.retry_count + 1
        for channel in candidate_channels(tiers):
            for key in self.pool.keys_in_order(channel):
                if call.attempts >= max_attempts:
                    break
                call.attempts += 1
                call.channel, call.key = channel, key
                if call.attempts == 1:
                    self.settlement.mark_sent(call)
                try:
                    response = await self.attempt(call, channel, key)
                    call.reached = True
                    return response
                except UpstreamFailure as failure:
                    call.reached = call.reached or failure.reached
                    last = failure
                    self.pool.used(key, ok=False, latency_ms=None)
                    await self.on_transition_of(self.pool.judge(key, failure.verdict))
                    if failure.verdict.fault == "request":
                        raise self.client_error(failure) from None
        if last is not None:
            raise self.client_error(last)
        channels = [c for tier in tiers for c in tier]
        wait = self.pool.soonest_cooldown(channels, time.time())
        if wait is not None:
            raise RelayError(
                429,
                N_("Every key for this model is cooling down; retry later."),
                type="rate_limit_error",
                code="keys_cooling",
                retry_after=max(1, int(wait + 0.999)),
            )
        raise RelayError(
            503,
            N_("No channel has a usable key for the model '{model}'."),
            type="server_error",
            code="no_available_key",
            params={"model": call.model},
        )

    async def on_transition_of(self, transition: keystate.Transition | None) -> None:
        if transition is not None:
            await self.on_transition(transition)

    def client_error(self, failure: UpstreamFailure) -> RelayError:
        verdict = failure.verdict
        if verdict.fault == "request":
            return RelayError(
                failure.status,
                N_("Upstream error: {message}"),
                code="upstream_error",
                params={"message": verdict.message},
            )
        if verdict.fault == "cool":
            return RelayError(
                429,
                N_("Upstream rate limit: {message}"),
                params={"message": verdict.message},
                type="rate_limit_error",
                code="rate_limit_exceeded",
                retry_after=max(1, int(min(verdict.retry_after or 1, self.pool.breaker.max_cooldown) + 0.999)),
            )
        if failure.timeout:
            return RelayError(
                504,
                N_("Upstream timed out: {message}"),
                type="server_error",
                code="upstream_timeout",
                params={"message": verdict.message},
            )
        return RelayError(
            502,
            N_("Upstream error (status {status}): {message}"),
            params={"status": failure.status, "message": verdict.message},
            type="server_error",
            code="upstream_error",
        )

    async def build(self, call: Call, provider: Provider, channel: ChannelSnap, key: KeySnap) -> UpstreamRequest:
        """The adapter's request for this channel: the client's own bytes when
        the formats match, else converted through the hub shape."""
        call.converted = provider.format != call.inbound.format
        if not call.converted:
            return provider.native_request(
                channel,
                key.secret,
                call.endpoint,
                call.raw,
                call.payload,
                call.model,
                call.stream,
                call.content_type,
                call.client_headers,
            )
        if call.endpoint not in CONVERTIBLE or call.payload is None:
            raise bad_request(
                N_(
                    "/{endpoint} is not available for the model '{model}': its channel speaks "
                    "the {format} format, which serves chat only."
                ),
                code="unsupported_endpoint",
                params={"endpoint": call.endpoint, "model": call.model, "format": provider.format},
            )
        try:
            if call.hub is None:
                call.hub = call.inbound.to_hub(call.payload)
            missing = [url for url in provider.remote_images(call.hub) if url not in call.images]
            if missing:
                await self.fetch_images(call, missing)
            return provider.hub_request(channel, key.secret, call.hub, call.model, call.stream, call.images)
        except ConversionError as exc:
            raise bad_request(str(exc), param=exc.param, code="unsupported_content") from None

    async def attempt(self, call: Call, channel: ChannelSnap, key: KeySnap) -> aiohttp.ClientResponse:
        provider = PROVIDERS[channel.protocol]
        request = await self.build(call, provider, channel, key)
        sent = time.monotonic()
        try:
            response, error_body = await self.exchange(call, channel, request)
        finally:
            call.upstream += time.monotonic() - sent
        if error_body is None:
            return response
        verdict = provider.judge(
            response.status, error_body, response.headers, key.secret, call.snapshot.disable_phrases
        )
        raise UpstreamFailure(response.status, verdict, timeout=response.status in (408, 504))

    async def exchange(
        self, call: Call, channel: ChannelSnap, request: UpstreamRequest
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """The network part of an attempt (Server-Timing's ``upstream``): the
        answer, with the body of an error answer read and released."""
        read_timeout = channel.idle_timeout if call.stream else channel.first_byte_timeout
        pending = self.session.post(
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=_timeout(channel.connect_timeout, read_timeout),
            proxy=channel.proxy_url,
        )
        try:
            if call.stream:
                # Streams read with the idle timeout, so the first byte gets its own deadline.
                async with asyncio.timeout(channel.connect_timeout + channel.first_byte_timeout):
                    response = await pending
            else:
                # sock_read bounds the wait for the first byte and every read after it.
                response = await pending
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
