"""Probing keys: the cheapest real request that proves a key works (a
1-token chat with the channel's test model), built by the channel type's
own adapter (relay/providers/) and judged by it with the relay's key-state
rules (relay/keystate.py), so probes and traffic agree.

Probes run concurrently with a bound; each has its own timeout, and each
result is recorded as soon as it is in, so one slow upstream never holds up
the rest.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_app.models import Channel, ChannelKey
from channels_app.services import record_key_transitions, record_probe_results
from channels_app.snapshot import channel_snap, load_disable_phrases
from core.services import bump_config_version
from relay import keystate
from relay.providers import PROVIDERS, has_adapter
from relay.providers.base import UpstreamRequest

log = logging.getLogger("oneproxy.probes")

CONCURRENCY = 16
TIMEOUT = 15.0
# Probe transitions are recorded as they come in; relay processes are told
# to reload at most this often during a run (and once at its end).
RELOAD_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    key_id: int
    channel_id: int
    state: str
    secret: str
    request: UpstreamRequest
    protocol: str
    proxy_url: str | None
    state_reason: str = ""


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


def targets(keys) -> list[ProbeTarget]:
    out = []
    for key in keys.select_related("channel"):
        channel: Channel = key.channel
        if not has_adapter(channel.type):
            continue  # never routed either (relay/providers/__init__.py)
        try:
            secret = key.reveal()
        except Exception:  # noqa: BLE001 - one unreadable key must not stop the run
            log.error("probe skipped: channel %s key %s cannot be decrypted", channel.pk, key.pk)
            continue
        snap = channel_snap(channel)
        out.append(
            ProbeTarget(
                key_id=key.pk,
                channel_id=channel.pk,
                state=key.state,
                secret=secret,
                request=PROVIDERS[snap.protocol].probe_request(snap, secret, channel.effective_test_model),
                protocol=snap.protocol,
                proxy_url=channel.proxy_url or None,
                state_reason=key.state_reason,
            )
        )
    return out


async def _probe_one(
    session: aiohttp.ClientSession, target: ProbeTarget, phrases: tuple[str, ...], timeout: float
) -> ProbeResult:
    request = target.request
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with session.post(
                request.url, data=request.body, proxy=target.proxy_url, headers=request.headers
            ) as response:
                data = await response.read()
                latency = int((time.monotonic() - started) * 1000)
                if response.status < 400:
                    return ProbeResult(target.key_id, True, response.status, latency, "")
                provider = PROVIDERS[target.protocol]
                verdict = provider.judge(response.status, data, response.headers, target.secret, phrases)
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
    on_result: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Probe every target, at most ``concurrency`` at a time; ``on_result``
    hears of each result the moment it is in."""
    limit = asyncio.Semaphore(concurrency)

    async with aiohttp.ClientSession(trust_env=True) as session:

        async def bounded(target: ProbeTarget) -> ProbeResult:
            async with limit:
                result = await _probe_one(session, target, phrases, timeout)
            if on_result is not None:
                on_result(result)
            return result

        return list(await asyncio.gather(*(bounded(t) for t in targets)))


def transition_for(target: ProbeTarget, result: ProbeResult, now: float) -> keystate.Transition | None:
    """Success brings a cooling or auto-disabled key back; failures follow
    the same rules as traffic. Manually disabled keys are never probed."""
    if result.ok:
        if target.state == keystate.AUTO_DISABLED and target.state_reason == "low_balance":
            return None  # the balance check disabled it and brings it back
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
        seconds = keystate.cooldown(verdict.retry_after, 1, settings.ONEPROXY_MAX_COOLDOWN_SECONDS)
        message = keystate.cooling_note(verdict.message, verdict.retry_after, seconds)
        return keystate.Transition(
            target.key_id, keystate.COOLING, verdict.reason, message, now, now + seconds, "probe"
        )
    return None


def probe_keys(
    *, channel_ids: list[int] | None = None, key_ids: list[int] | None = None, due_only: bool = False
) -> list[ProbeResult]:
    """Probe keys with a 1-token chat and record what was learnt: the one
    entry the task (``channels_app.probe_keys``), the admin and the API use.

    Live keys of live channels that are not manually disabled: all of them,
    or those of ``channel_ids``, or ``key_ids``; now. With ``due_only``
    (beat): only the keys whose scheduled probe is due
    (``ChannelKeyQuerySet.due_for_probe``), claimed first so that an
    overlapping run skips them.
    """
    keys = ChannelKey.objects.live().filter(channel__deleted_at__isnull=True)
    if channel_ids is not None:
        keys = keys.filter(channel_id__in=channel_ids)
    if key_ids is not None:
        keys = keys.filter(pk__in=key_ids)
    keys = keys.exclude(state=ChannelKey.State.MANUAL_DISABLED)
    if due_only:
        keys = ChannelKey.objects.filter(pk__in=_claim_due_keys(keys))
    return _probe_and_record(keys)


def _claim_due_keys(keys) -> list[int]:
    """Ids of the due keys, stamped as probed now in the same transaction.
    PostgreSQL: rows another run holds are skipped; SQLite: the IMMEDIATE
    transaction already serialises writers."""
    now = timezone.now()
    with transaction.atomic():
        due = keys.due_for_probe(now).select_for_update(skip_locked=True, of=("self",))
        ids = list(due.values_list("pk", flat=True))
        ChannelKey.objects.filter(pk__in=ids).update(last_probed_at=now)
    return ids


def _probe_and_record(keys) -> list[ProbeResult]:
    """Probe these keys now and record what was learnt; returns the results.

    The probes run on an event loop in a helper thread; this thread records
    each result as it arrives (the database connection stays here), so a
    disabled key is out of rotation without waiting for the slowest upstream.
    """
    found = targets(keys.exclude(state=ChannelKey.State.MANUAL_DISABLED))
    if not found:
        return []
    by_id = {t.key_id: t for t in found}
    phrases = load_disable_phrases()
    arrived: queue.SimpleQueue[ProbeResult | BaseException | None] = queue.SimpleQueue()

    def run() -> None:
        try:
            asyncio.run(
                probe_all(
                    found,
                    phrases,
                    concurrency=settings.ONEPROXY_PROBE_CONCURRENCY,
                    timeout=settings.ONEPROXY_PROBE_TIMEOUT,
                    on_result=arrived.put,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            arrived.put(exc)
        finally:
            arrived.put(None)

    prober = threading.Thread(target=run, name="oneproxy-probes", daemon=True)
    prober.start()
    results: dict[int, ProbeResult] = {}
    unannounced = False
    last_reload = 0.0
    while (item := arrived.get()) is not None:
        if isinstance(item, BaseException):
            prober.join()
            raise item
        results[item.key_id] = item
        target = by_id[item.key_id]
        if not item.ok:
            log.warning(
                "probe failed: channel %s key %s: %s %s",
                target.channel_id,
                target.key_id,
                item.http_status or (item.verdict.reason if item.verdict else "error"),
                item.error,
            )
        transition = transition_for(target, item, time.time())
        if transition is not None:
            record_key_transitions([transition])
            unannounced = True
        record_probe_results([item])
        if unannounced and time.monotonic() - last_reload >= RELOAD_EVERY:
            bump_config_version()  # relay processes reload the recovered/disabled keys
            unannounced, last_reload = False, time.monotonic()
    prober.join()
    if unannounced:
        bump_config_version()
    return [results[t.key_id] for t in found if t.key_id in results]
