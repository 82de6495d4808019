"""The aiohttp clients: latency at a fixed low rate, paced streams timed
event by event, and thousands of slow streams held at once.

They run in the driver's process, on the load core. Their own overhead is
the same for every target, so figures are reported as differences from the
direct (client → upstream) run made the same way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable

import aiohttp

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello in one short sentence."},
]


def body(model: str, stream: bool = False) -> bytes:
    payload: dict = {"model": model, "messages": MESSAGES, "max_tokens": 32}
    if stream:
        payload["stream"] = True
        payload["max_tokens"] = 128
    return json.dumps(payload, separators=(",", ":")).encode()


def headers(key: str) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    if key:
        out["Authorization"] = f"Bearer {key}"
    return out


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# --- latency at a fixed low rate, one connection ------------------------------
#
# Each measurement interleaves the relay with the direct upstream, request by
# request (or stream by stream), so both see the same machine at the same
# moments: anything else running on the box disturbs both alike, and the
# difference is what the relay adds.


def _stats(samples: list[float]) -> dict:
    return {
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "mean_ms": sum(samples) / len(samples) if samples else float("nan"),
    }


# The metrics of the relay's Server-Timing header (relay/app.py server_timing).
TIMING_PARTS = ("gateway", "ledger", "upstream")


def server_timing(value: str | None) -> dict[str, float]:
    """``Server-Timing: gateway;dur=0.231, ledger;dur=0.02, upstream;dur=0.412`` → {name: ms}."""
    out: dict[str, float] = {}
    for metric in (value or "").split(","):
        name, _, params = metric.strip().partition(";")
        for param in params.split(";"):
            key, _, number = param.strip().partition("=")
            if key == "dur":
                try:
                    out[name] = float(number)
                except ValueError:
                    pass
    return out


def breakdown(timed: list[tuple[float, dict[str, float]]]) -> dict | None:
    """Where the time of the typical (the middle tenth around the median) and
    of the slowest 1% of requests went, by the relay's own Server-Timing
    header: its own work ("gateway"), the hold and settlement ("ledger"),
    waiting on the upstream, and the rest ("outside": reaching the relay and
    getting back, wake-ups included)."""
    timed = [(total, t) for total, t in timed if set(TIMING_PARTS) <= t.keys()]
    if len(timed) < 100:
        return None
    timed.sort(key=lambda item: item[0])
    n = len(timed)

    def mean_of(group: list[tuple[float, dict[str, float]]]) -> dict:
        def mean(part: str) -> float:
            return sum(item[1][part] for item in group) / len(group)

        total = sum(item[0] for item in group) / len(group)
        parts = {f"{part}_ms": mean(part) for part in TIMING_PARTS}
        return {"requests": len(group), "total_ms": total, **parts, "outside_ms": total - sum(parts.values())}

    return {"typical": mean_of(timed[n * 45 // 100 : n * 55 // 100]), "slowest": mean_of(timed[n - max(1, n // 100) :])}


async def fixed_rate(
    targets: dict[str, tuple[str, str]], *, rate: float, max_requests: int, max_seconds: float, warmup: int = 100
) -> dict:
    """``targets``: name -> (url, key). One keep-alive connection per target;
    one request every 1/rate seconds (or back to back when answers take
    longer), taking the targets in turn: latency without queueing."""
    data = body("bench-instant")
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for name in targets}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    timed: dict[str, list[tuple[float, dict[str, float]]]] = {name: [] for name in targets}
    errors = dict.fromkeys(targets, 0)
    try:
        for name, (url, key) in targets.items():
            for _ in range(warmup):
                async with sessions[name].post(url, data=data, headers=headers(key)) as r:
                    await r.read()
        interval = 1 / rate
        start = time.perf_counter()
        next_at = start
        for _ in range(max_requests):
            for name, (url, key) in targets.items():
                wait = next_at - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                next_at += interval
                t0 = time.perf_counter_ns()
                async with sessions[name].post(url, data=data, headers=headers(key)) as r:
                    await r.read()
                    ok = r.status == 200
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                if ok:
                    samples[name].append(elapsed)
                    if "Server-Timing" in r.headers:
                        timed[name].append((elapsed, server_timing(r.headers["Server-Timing"])))
                else:
                    errors[name] += 1
            if time.perf_counter() - start > max_seconds:
                break
    finally:
        for session in sessions.values():
            await session.close()
    return {
        name: {
            "requests": len(samples[name]) + errors[name],
            "errors": errors[name],
            "rate": rate,
            **_stats(samples[name]),
            "breakdown": breakdown(timed[name]),
        }
        for name in targets
    }


# --- paced streams --------------------------------------------------------------


def _content_events(buffer: bytes) -> tuple[int, bytes]:
    """Count complete SSE events carrying generated text; return the rest."""
    count = 0
    while (end := buffer.find(b"\n\n")) >= 0:
        event, buffer = buffer[:end], buffer[end + 2 :]
        if not event.startswith(b"data: {"):
            continue
        try:
            choices = json.loads(event[6:]).get("choices") or []
        except ValueError:
            continue
        if any((c.get("delta") or {}).get("content") for c in choices if isinstance(c, dict)):
            count += 1
    return count, buffer


async def _one_stream(session: aiohttp.ClientSession, url: str, key: str, data: bytes) -> dict:
    arrivals: list[float] = []
    coalesced = 0
    first = None
    buffer = b""
    t0 = time.perf_counter()
    async with session.post(url, data=data, headers=headers(key)) as r:
        status = r.status
        timing = server_timing(r.headers.get("Server-Timing"))
        async for piece in r.content.iter_any():
            now = time.perf_counter()
            if first is None:
                first = now
            n, buffer = _content_events(buffer + piece)
            arrivals.extend([now] * n)
            coalesced += max(0, n - 1)
    end = time.perf_counter()
    return {
        "status": status,
        "t0": t0,
        "first": first,
        "end": end,
        "arrivals": arrivals,
        "coalesced": coalesced,
        "timing": timing,
    }


async def paced_streams(targets: dict[str, tuple[str, str]], *, streams: int, chunks: int, interval: float) -> dict:
    """Streams one after another, taking the targets in turn; per stream: time
    to the first body byte, time to the end, and for every content event its
    lateness against the upstream's schedule (event i is sent at
    first + i × interval)."""
    data = body("bench-stream", stream=True)
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for name in targets}
    acc = {
        name: {"ttfb": [], "total": [], "late": [], "coalesced": 0, "failures": 0, **{p: [] for p in TIMING_PARTS}}
        for name in targets
    }
    try:
        for i in range(streams + 2):  # the first two warm connection pools and caches up
            for name, (url, key) in targets.items():
                s = await _one_stream(sessions[name], url, key, data)
                if i < 2:
                    continue
                a = acc[name]
                if s["status"] != 200 or len(s["arrivals"]) != chunks or s["first"] is None:
                    a["failures"] += 1
                    continue
                a["ttfb"].append((s["first"] - s["t0"]) * 1000)
                a["total"].append((s["end"] - s["t0"]) * 1000)
                first = s["arrivals"][0]
                a["late"] += [(t - first - k * interval) * 1000 for k, t in enumerate(s["arrivals"])]
                a["coalesced"] += s["coalesced"]
                if set(TIMING_PARTS) <= s["timing"].keys():
                    for part in TIMING_PARTS:
                        a[part].append(s["timing"][part])
    finally:
        for session in sessions.values():
            await session.close()
    return {
        name: {
            "streams": streams,
            "failures": a["failures"],
            "ttfb_p50_ms": percentile(a["ttfb"], 50),
            "ttfb_p99_ms": percentile(a["ttfb"], 99),
            "total_p50_ms": percentile(a["total"], 50),
            "total_p99_ms": percentile(a["total"], 99),
            "late_p50_ms": percentile(a["late"], 50),
            "late_p99_ms": percentile(a["late"], 99),
            "late_max_ms": max(a["late"]) if a["late"] else float("nan"),
            "coalesced_events": a["coalesced"],
            # The relay's Server-Timing at the stream's start: its own work
            # before the first byte, the hold, and the wait for the upstream's headers.
            **{f"{part}_p50_ms": percentile(a[part], 50) if a[part] else None for part in TIMING_PARTS},
        }
        for name, a in acc.items()
    }


# --- thousands of slow streams at once -----------------------------------------------


async def slow_streams(
    url: str, key: str, *, streams: int, chunks: int, ramp_seconds: float, rss: Callable[[], int]
) -> dict:
    """Open ``streams`` slow streams within ``ramp_seconds`` and hold them all
    to the end; sample the server's RSS (``rss()``) twice a second."""
    data, hdrs = body("bench-slow", stream=True), headers(key)
    failures: Counter[str] = Counter()
    state = {"open": 0, "peak_open": 0, "ok": 0}
    rss_samples: list[int] = []

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(i * ramp_seconds / streams)
        opened = False
        try:
            async with session.post(url, data=data, headers=hdrs) as r:
                if r.status != 200:
                    failures[f"HTTP {r.status}"] += 1
                    await r.read()
                    return
                opened = True
                state["open"] += 1
                state["peak_open"] = max(state["peak_open"], state["open"])
                seen, buffer, done = 0, b"", False
                async for piece in r.content.iter_any():
                    n, buffer = _content_events(buffer + piece)
                    seen += n
                    done = done or b"data: [DONE]" in piece
            if seen == chunks and done:
                state["ok"] += 1
            else:
                failures[f"incomplete ({seen}/{chunks} chunks, done={done})"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            failures[type(exc).__name__] += 1
        finally:
            if opened:
                state["open"] -= 1

    async def sample() -> None:
        while True:
            rss_samples.append(rss())
            await asyncio.sleep(0.5)

    before = rss()
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(one(i, session) for i in range(streams)))
        sampler.cancel()
    elapsed = time.perf_counter() - started
    await asyncio.sleep(1.0)
    after = rss()
    peak = max(rss_samples) if rss_samples else before
    return {
        "streams": streams,
        "ok": state["ok"],
        "failures": sum(failures.values()),
        "failure_kinds": dict(failures),
        "peak_open": state["peak_open"],
        "seconds": elapsed,
        "rss_before": before,
        "rss_peak": peak,
        "rss_after": after,
        "kb_per_stream": (peak - before) / streams / 1024,
    }
