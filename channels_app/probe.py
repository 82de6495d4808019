"""Probing keys: the cheapest real request that proves a key works (a
1-token chat with the channel's test model), judged by the relay's own
key-state rules (relay/keystate.py), so probes and traffic agree.

Probes run concurrently with a bound; each has its own timeout, so one slow
upstream never holds up the rest.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson

from channels_app.models import Channel, ChannelKey
from channels_app.services import record_key_transitions
from channels_app.snapshot import load_disable_phrases
from relay import keystate
from relay.channel_types import CHANNEL_TYPES

CONCURRENCY = 16
TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    key_id: int
    channel_id: int
    state: str
    secret: str
    url: str
    model: str
    proxy_url: str | None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    key_id: int
    ok: bool
    http_status: int | None
    latency_ms: int
    error: str
    verdict: keystate.Verdict | None = None

    def as_dict(self) -> dict:
        return {
            "key_id": self.key_id,
            "ok": self.ok,
            "http_status": self.http_status,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


def targets(keys) -> list[ProbeTarget]:  # type: ignore[no-untyped-def]
    out = []
    for key in keys.select_related("channel"):
        channel: Channel = key.channel
        if CHANNEL_TYPES[channel.type].protocol != "openai":
            continue  # native adapters probe once they exist
        out.append(
            ProbeTarget(
                key_id=key.pk,
                channel_id=channel.pk,
                state=key.state,
                secret=key.reveal(),
                url=f"{channel.effective_base_url}/chat/completions",
                model=channel.effective_test_model,
                proxy_url=channel.proxy_url or None,
            )
        )
    return out


async def _probe_one(
    session: aiohttp.ClientSession, target: ProbeTarget, phrases: tuple[str, ...], timeout: float
) -> ProbeResult:
    body = orjson.dumps({"model": target.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with session.post(
                target.url,
                data=body,
                proxy=target.proxy_url,
                headers={"Authorization": f"Bearer {target.secret}", "Content-Type": "application/json"},
            ) as response:
                data = await response.read()
                latency = int((time.monotonic() - started) * 1000)
                if response.status < 400:
                    return ProbeResult(target.key_id, True, response.status, latency, "")
                verdict = keystate.judge(response.status, data, response.headers, target.secret, phrases)
                return ProbeResult(target.key_id, False, response.status, latency, verdict.message, verdict)
    except TimeoutError:
        verdict = keystate.Verdict("transient", "timeout", f"no answer within {timeout:.0f}s")
    except aiohttp.ClientError as exc:
        verdict = keystate.Verdict("transient", "connect_error", f"cannot reach upstream: {type(exc).__name__}")
    return ProbeResult(target.key_id, False, None, int((time.monotonic() - started) * 1000), verdict.message, verdict)


async def probe_all(
    targets: list[ProbeTarget],
    phrases: tuple[str, ...] = (),
    *,
    concurrency: int = CONCURRENCY,
    timeout: float = TIMEOUT,
) -> list[ProbeResult]:
    limit = asyncio.Semaphore(concurrency)

    async with aiohttp.ClientSession(trust_env=True) as session:

        async def bounded(target: ProbeTarget) -> ProbeResult:
            async with limit:
                return await _probe_one(session, target, phrases, timeout)

        return list(await asyncio.gather(*(bounded(t) for t in targets)))


def transition_for(target: ProbeTarget, result: ProbeResult, now: float) -> keystate.Transition | None:
    """Success brings a cooling or auto-disabled key back; failures follow
    the same rules as traffic. Manually disabled keys are never probed."""
    if result.ok:
        if target.state in (keystate.COOLING, keystate.AUTO_DISABLED):
            return keystate.Transition(target.key_id, keystate.ACTIVE, "probe_ok", "", now, None, "probe")
        return None
    verdict = result.verdict
    if verdict is None:
        return None
    if verdict.fault == "key":
        return keystate.Transition(
            target.key_id, keystate.AUTO_DISABLED, verdict.reason, verdict.message, now, None, "probe"
        )
    if verdict.fault == "cool":
        until = now + (verdict.retry_after if verdict.retry_after is not None else keystate.backoff(1))
        return keystate.Transition(
            target.key_id, keystate.COOLING, verdict.reason, verdict.message, now, until, "probe"
        )
    return None


def probe_keys(keys, *, concurrency: int = CONCURRENCY, timeout: float = TIMEOUT) -> list[ProbeResult]:  # type: ignore[no-untyped-def]
    """Probe these keys now and record what was learnt; returns the results."""
    found = targets(keys.exclude(state=ChannelKey.State.MANUAL_DISABLED))
    results = asyncio.run(probe_all(found, load_disable_phrases(), concurrency=concurrency, timeout=timeout))
    now = time.time()
    transitions = [t for target, r in zip(found, results, strict=True) if (t := transition_for(target, r, now))]
    record_key_transitions(transitions)
    from channels_app.services import record_probe_results

    record_probe_results(results)
    if transitions:
        from channels_app.services import bump_config_version

        bump_config_version()  # relay processes reload the recovered/disabled keys
    return results
