"""docs/BENCHMARKS.md and its plots from one run's results. Only what was
measured in this run is written; anything missing says "not measured"."""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

TARGETS = [
    ("direct", "direct"),
    ("floor", "floor"),
    ("embedded", "oneproxy embedded"),
    ("service", "oneproxy service"),
    ("litellm", "LiteLLM Proxy"),
]
RELAYS = [t for t in TARGETS if t[0] != "direct"]
COLORS = {name: f"C{i}" for i, (name, _) in enumerate(TARGETS)}  # the same colour for a target in every plot
MIB = 2**20
NM = "not measured"


# --- facts about the machine and the software ---------------------------------


def _out(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def machine() -> dict:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown",
    )
    mem_kb = next(
        int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:")
    )
    os_name = next(
        (
            ln.split("=", 1)[1].strip('"')
            for ln in Path("/etc/os-release").read_text().splitlines()
            if ln.startswith("PRETTY_NAME=")
        ),
        "unknown",
    )
    return {
        "nproc": _out(["nproc", "--all"]),  # --all: the driver itself is pinned to one core
        "cpu": cpu,
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "os": os_name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def versions(venv: Path, litellm_venv: Path) -> dict:
    py = str(venv / "bin" / "python")
    pkgs = _out(
        [
            py,
            "-c",
            "import importlib.metadata as m, platform; print(platform.python_version()); "
            "[print(p, m.version(p)) for p in ('Django','uvicorn','uvloop','httptools','aiohttp','orjson',"
            "'psycopg','redis')]",
        ]
    ).splitlines()
    root = Path(__file__).resolve().parent.parent
    # GIT_OPTIONAL_LOCKS=0: read-only, never touches the index.
    git_env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, env=git_env
    ).stdout.strip()
    # The run's own outputs (the profile flame graph is written before this) do not count.
    outputs = [":(exclude)docs/BENCHMARKS.md", ":(exclude)docs/bench-*"]
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *outputs],
        cwd=root,
        capture_output=True,
        text=True,
        env=git_env,
    ).stdout.strip()
    litellm = None
    for dist in (litellm_venv / "lib").glob("python3*/site-packages/litellm-*.dist-info"):
        litellm = dist.name.removeprefix("litellm-").removesuffix(".dist-info")
    return {
        "python": pkgs[0] if pkgs else "?",
        "packages": dict(line.split(" ", 1) for line in pkgs[1:] if " " in line),
        "nginx": _out(["nginx", "-v"]).removeprefix("nginx version: "),
        "wrk": _out(["wrk", "-v"]).splitlines()[0].split(" Copyright")[0] if _out(["wrk", "-v"]) else "?",
        "postgresql": _out(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "show server_version"]),
        "redis": next(
            (
                ln.split(":", 1)[1]
                for ln in _out(["redis-cli", "info", "server"]).splitlines()
                if ln.startswith("redis_version:")
            ),
            "?",
        ),
        "litellm": litellm,
        "commit": commit + (" with uncommitted changes" if dirty else ""),
    }


# --- profile ---------------------------------------------------------------------


def _area(frame: str) -> str:
    path = frame.rpartition("(")[2]
    if "relay/" in path and "site-packages" not in path:
        return "relay (oneproxy)"
    for needle, area in [
        ("aiohttp/", "aiohttp client"),
        ("uvicorn/", "uvicorn + httptools"),
        ("httptools", "uvicorn + httptools"),
        ("asyncio/", "asyncio / uvloop"),
        ("uvloop", "asyncio / uvloop"),
        ("django/", "Django (ORM, in the DB thread)"),
        ("billing/", "billing (in the DB thread)"),
        ("channels_app/", "channels_app"),
        ("sqlite3", "sqlite3"),
        ("psycopg", "psycopg"),
        ("redis/", "redis client"),
        ("concurrent/futures", "DB worker thread"),
        ("threading.py", "DB worker thread"),
        ("yarl/", "yarl (URLs)"),
        ("multidict", "multidict"),
    ]:
        if needle in path:
            return area
    return "other"


def _thread_kind(frame: str) -> str:
    name = frame.partition("): ")[2] or frame
    if name == "MainThread":
        return "event loop (main thread)"
    if name.startswith("oneproxy-db"):
        return "relay DB worker thread (relay/db.py)"
    if name.startswith(("uvloop_", "asyncio_", "ThreadPoolExecutor")):
        return "default thread-pool executor (run_in_executor / to_thread)"
    return name


# Functions whose total share is worth a line of its own, when they appear.
WATCH = [
    "apply_usage (billing/usage_sink.py)",
    "current_balances (billing/usage_sink.py)",
    "DjangoBackend.config_version (oneproxy/relay_backend.py)",
    "ClientSession._request (aiohttp/client.py)",
    "ClientSession._get_netrc_auth (aiohttp/client.py)",
    "get_env_proxy_for_url (aiohttp/helpers.py)",
    "netrc_from_env (aiohttp/helpers.py)",
    "BaseEventLoop.run_in_executor (asyncio/base_events.py)",
    "to_thread (asyncio/threads.py)",
]


def hot_spots(raw: str, top: int = 15) -> dict:
    """From py-spy's collapsed stacks ("thread;f1;f2 count", recorded with
    --threads --gil so every sample is a moment some thread held the GIL):
    the share per thread, functions by own time (the leaf frame), by total
    time (anywhere on the stack), and the leaf time by area of code."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        kind = ""
        if frames and frames[0].startswith("thread ("):
            kind = _thread_kind(frames[0])
            threads[kind] += n
            frames = frames[1:]
        if not frames:
            continue
        samples += n
        joined = ";".join(frames)
        if "usage_sink.py" in joined:
            groups["usage"] += n
        if kind.startswith("default thread-pool") or any(
            f in joined for f in ("get_env_proxy_for_url", "netrc_from_env", "_get_netrc_auth", "to_thread (")
        ):
            groups["trust_env"] += n
        # Aggregate by function and file, not by line.
        names = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames]
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
        areas[_area(frames[-1])] += n
    relay_total = Counter({k: v for k, v in total.items() if "relay/" in k and "site-packages" not in k})
    return {
        "samples": samples,
        "threads": threads.most_common(),
        "own": own.most_common(top),
        "total_relay": relay_total.most_common(top),
        "watch": [(name, total[name]) for name in WATCH if total.get(name)],
        "groups": dict(groups),
        "areas": areas.most_common(),
    }


# --- formatting -------------------------------------------------------------------


def _num(v, fmt: str = "{:,.0f}") -> str:  # type: ignore[no-untyped-def]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NM
    return fmt.format(v)


def _wrk_at(res: dict, name: str, c: int) -> dict | None:
    for row in res.get("targets", {}).get(name, {}).get("wrk", []):
        if row["connections"] == c:
            return row
    return None


def _ratio(a, b) -> str:  # type: ignore[no-untyped-def]
    if a is None or b is None or not b:
        return NM
    return f"{a / b:.2f}×" if a / b < 10 else f"{a / b:.1f}×"


def _pct(a, b) -> str:  # type: ignore[no-untyped-def]
    if a is None or b is None or not b:
        return NM
    return f"{100 * a / b:.0f}%"


def _get(res: dict, name: str, *path: str):  # type: ignore[no-untyped-def]
    node = res.get("targets", {}).get(name)
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _loadavg(values) -> str:  # type: ignore[no-untyped-def]
    return " / ".join(f"{x:.2f}" for x in values) + " (1 / 5 / 15 min)" if values else NM


def _verdict(ok: bool | None) -> str:
    return NM if ok is None else ("**met**" if ok else "**not met**")


# --- the report ---------------------------------------------------------------------


def targets_table(res: dict) -> list[str]:
    """Issue 7's targets against this run's figures."""
    rows = []

    def rps(name: str, c: int = 64):  # type: ignore[no-untyped-def]
        row = _wrk_at(res, name, c)
        return row["rps"] if row else None

    floor, emb, svc, lite = rps("floor"), rps("embedded"), rps("service"), rps("litellm")
    rows.append(
        (
            "Embedded, non-stream, 64 connections: ≥ 40% of the floor's requests/s",
            f"{_num(emb)} vs floor {_num(floor)} req/s = {_pct(emb, floor)}",
            _verdict(None if emb is None or floor is None else emb >= 0.4 * floor),
        )
    )
    rows.append(
        (
            "… that is ≥ ~30× LiteLLM",
            f"{_ratio(emb, lite)} LiteLLM ({_num(lite)} req/s)",
            _verdict(None if emb is None or lite is None else emb >= 30 * lite),
        )
    )
    rows.append(
        (
            "Service mode (PostgreSQL + Redis, billing on), 64 connections: ≥ 20% of the floor",
            f"{_num(svc)} req/s = {_pct(svc, floor)} of the floor",
            _verdict(None if svc is None or floor is None else svc >= 0.2 * floor),
        )
    )

    def added(name: str, pct: str) -> float | None:
        """Fixed-rate client: this target's percentile minus its interleaved direct requests'."""
        relay, direct = _get(res, name, "latency", pct), _get(res, name, "latency_direct", pct)
        return None if relay is None or direct is None else relay - direct

    def added_wrk(name: str, pct: str) -> float | None:
        """Closed loop, wrk -c1: this target's percentile minus direct's."""
        relay, direct = _wrk_at(res, name, 1), _wrk_at(res, "direct", 1)
        return None if relay is None or direct is None else relay[pct] - direct[pct]

    for name, label in (("embedded", "embedded"), ("service", "service")):
        for pct, limit in (("p50_ms", 0.5), ("p99_ms", 2.0)):
            value = added(name, pct)
            # The floor's own figure shows what this machine's wake-ups cost
            # any Python relay at a low rate, before any gateway work.
            context = (
                f" (the floor: {_num(added('floor', pct), '{:+.3f}')} ms; closed loop, wrk -c1: "
                f"{_num(added_wrk(name, pct), '{:+.3f}')} ms, the floor {_num(added_wrk('floor', pct), '{:+.3f}')} ms)"
            )
            rows.append(
                (
                    f"Added latency at 1 connection ({label}): {pct[:3]} ≤ {limit:g} ms over direct",
                    f"{_num(value, '{:+.3f}')} ms{context}",
                    _verdict(None if value is None else value <= limit),
                )
            )
    for name, label in (("embedded", "embedded"), ("service", "service")):
        dt = _get(res, name, "streams_direct", "ttfb_p50_ms")
        dl = _get(res, name, "streams_direct", "late_p99_ms")
        t = _get(res, name, "streams", "ttfb_p50_ms")
        added = None if t is None or dt is None else t - dt
        rows.append(
            (
                f"Streaming ({label}): added time-to-first-byte p50 ≤ 1 ms",
                f"{_num(added, '{:+.3f}')} ms",
                _verdict(None if added is None else added <= 1.0),
            )
        )
        co = _get(res, name, "streams", "coalesced_events")
        dco = _get(res, name, "streams_direct", "coalesced_events")
        late = _get(res, name, "streams", "late_p99_ms")
        extra = None if late is None or dl is None else late - dl
        # The client's own reads coalesce now and then on a busy core (the
        # direct streams show it too), so the relay is judged against them.
        ok = None if co is None or dco is None or extra is None else (co <= dco and extra <= 1.0)
        rows.append(
            (
                f"Streaming ({label}): chunks never coalesced or delayed (no more coalesced chunks than the "
                "interleaved direct streams; chunk lateness p99 within 1 ms of theirs)",
                f"{_num(co)} coalesced (direct {_num(dco)}); lateness p99 {_num(extra, '{:+.3f}')} ms against direct",
                _verdict(ok),
            )
        )
    for name, label in (("embedded", "embedded"), ("service", "service")):
        slow = _get(res, name, "slow")
        if slow is None:
            rows.append(
                (
                    f"2,000 concurrent streams ({label}): ≤ 100 KB RSS per stream above idle, zero failures",
                    NM,
                    _verdict(None),
                )
            )
            continue
        ok = slow["kb_per_stream"] <= 100 and slow["failures"] == 0 and slow["ok"] == slow["streams"]
        rows.append(
            (
                f"{slow['streams']:,} concurrent streams ({label}): ≤ 100 KB RSS per stream above idle, zero failures",
                f"{slow['kb_per_stream']:.1f} KB/stream; {slow['failures']} failures; "
                f"{slow['ok']:,} complete; peak {slow['peak_open']:,} open at once",
                _verdict(ok if slow["streams"] >= 2000 else None),
            )
        )
    for name, label in (("embedded", "embedded"), ("service", "service")):
        idle = _get(res, name, "rss_idle")
        rows.append(
            (
                f"Idle RSS ({label}) ≤ 100 MiB",
                f"{_num(idle and idle / MIB, '{:.1f}')} MiB",
                _verdict(None if idle is None else idle <= 100 * MIB),
            )
        )
    rows.append(
        (
            "Tests: a cached request performs zero database queries and zero sync-to-async hops",
            "checked by the test suite, not by this benchmark",
            "—",
        )
    )
    out = ["| target (issue 7) | this run | |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return out


def _rps_cell(row: dict | None) -> str:
    if row is None:
        return NM
    others = list(row.get("rounds_rps", []))
    if row["rps"] in others:
        others.remove(row["rps"])
    return f"{row['rps']:,.0f}" + (" (" + ", ".join(f"{r:,.0f}" for r in others) + ")" if others else "")


def throughput_tables(res: dict) -> list[str]:
    conc = res["settings"]["concurrency"]
    out = [
        "Successful (2xx) requests per second, closed loop (`wrk`, each connection sends its next request when "
        "the answer arrives); the better round, the other round in brackets:",
        "",
        "| connections | "
        + " | ".join(label for _, label in TARGETS)
        + " | embedded / floor | embedded / LiteLLM | service / floor | service / LiteLLM |",
        "|---:|" + "---:|" * (len(TARGETS) + 4),
    ]
    for c in conc:
        cells = [_wrk_at(res, name, c) for name, _ in TARGETS]
        v = {name: (row["rps"] if row else None) for (name, _), row in zip(TARGETS, cells, strict=False)}
        out.append(
            f"| {c} | "
            + " | ".join(_rps_cell(row) for row in cells)
            + " | "
            + " | ".join(
                [
                    _pct(v["embedded"], v["floor"]),
                    _ratio(v["embedded"], v["litellm"]),
                    _pct(v["service"], v["floor"]),
                    _ratio(v["service"], v["litellm"]),
                ]
            )
            + " |"
        )
    out += [
        "",
        "Latency under that load, p50 / p99 in ms (wrk's own measurement):",
        "",
        "| connections | " + " | ".join(label for _, label in TARGETS) + " |",
        "|---:|" + "---:|" * len(TARGETS),
    ]
    for c in conc:
        cells = []
        for name, _ in TARGETS:
            row = _wrk_at(res, name, c)
            cells.append(f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}" if row else NM)
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    errors = [
        (label, row["connections"], row["errors"])
        for name, label in TARGETS
        for row in res.get("targets", {}).get(name, {}).get("wrk", [])
        if row["errors"]
    ]
    out += [""]
    if errors:
        out += [
            "Errors during these runs (socket errors, timeouts and non-2xx answers): "
            + "; ".join(f"{label} at {c} connections: {n:,}" for label, c, n in errors)
            + "."
        ]
    else:
        out += ["No errors in any of these runs (socket errors, timeouts or non-2xx answers)."]
    return out


def cpu_rss_table(res: dict) -> list[str]:
    conc = res["settings"]["concurrency"]
    out = ["| | " + " | ".join(label for _, label in TARGETS) + " |", "|---|" + "---:|" * len(TARGETS)]
    for c in conc:
        cells = []
        for name, _ in TARGETS:
            row = _wrk_at(res, name, c)
            cells.append(_num(row and row["cpu_ms_per_request"], "{:.3f}"))
        out.append(f"| CPU ms per request at {c} connection{'s' if c != 1 else ''} | " + " | ".join(cells) + " |")
    for key, label in (
        ("rss_idle", "RSS idle, after start, before any request (MiB)"),
        ("rss_after_load", "RSS after the wrk runs (MiB)"),
    ):
        out.append(
            f"| {label} | "
            + " | ".join(_num(_get(res, n, key) and _get(res, n, key) / MIB, "{:.1f}") for n, _ in TARGETS)
            + " |"
        )
    return out


def others_table(res: dict) -> list[str]:
    """How busy the server core was with processes not under test."""
    conc = res["settings"]["concurrency"]
    out = ["| connections | " + " | ".join(label for _, label in TARGETS) + " |", "|---:|" + "---:|" * len(TARGETS)]
    for c in conc:
        cells = []
        for name, _ in TARGETS:
            row = _wrk_at(res, name, c)
            share = row.get("others_on_server_core") if row else None
            cells.append(_num(share and 100 * share, "{:.0f}%") if share is not None else NM)
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    return out


def latency_table(res: dict) -> list[str]:
    out = [
        "| | pairs | direct p50 ms | relay p50 ms | added p50 ms | direct p99 ms | relay p99 ms | added p99 ms | "
        "errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in RELAYS:
        lat, d = _get(res, name, "latency"), _get(res, name, "latency_direct")
        if not lat or not d:
            out.append(f"| {label} | {NM} | | | | | | | |")
            continue
        out.append(
            f"| {label} | {lat['requests']:,} | {d['p50_ms']:.3f} | {lat['p50_ms']:.3f} | "
            f"{lat['p50_ms'] - d['p50_ms']:+.3f} | {d['p99_ms']:.3f} | {lat['p99_ms']:.3f} | "
            f"{lat['p99_ms'] - d['p99_ms']:+.3f} | {lat['errors'] + d['errors']} |"
        )
    return out


def breakdown_table(res: dict) -> list[str]:
    out = [
        "| | requests | total ms | gateway ms | ledger ms | upstream ms | outside ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in RELAYS:
        b = (_get(res, name, "latency") or {}).get("breakdown")
        if not b:
            continue
        for group, what in (("typical", "typical (middle tenth)"), ("slowest", "slowest 1%")):
            g = b[group]
            out.append(
                f"| {label}, {what} | {g['requests']:,} | {g['total_ms']:.3f} | {g['gateway_ms']:.3f} | "
                f"{g['ledger_ms']:.3f} | {g['upstream_ms']:.3f} | {g['outside_ms']:.3f} |"
            )
    return out if len(out) > 2 else [f"Server-Timing breakdown: {NM}."]


def stream_table(res: dict) -> list[str]:
    out = [
        "| | streams ok | TTFB p50 ms (direct → relay) | added TTFB p50 | TTFB p99 ms (direct → relay) | "
        "total p50 ms (direct → relay) | chunk lateness p99 ms (direct → relay) | lateness max ms | "
        "coalesced chunks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in RELAYS:
        s, d = _get(res, name, "streams"), _get(res, name, "streams_direct")
        if not s or not d:
            out.append(f"| {label} | {NM} | | | | | | | |")
            continue
        out.append(
            f"| {label} | {s['streams'] - s['failures']}/{s['streams']} | "
            f"{d['ttfb_p50_ms']:.3f} → {s['ttfb_p50_ms']:.3f} | {s['ttfb_p50_ms'] - d['ttfb_p50_ms']:+.3f} | "
            f"{d['ttfb_p99_ms']:.3f} → {s['ttfb_p99_ms']:.3f} | {d['total_p50_ms']:.1f} → {s['total_p50_ms']:.1f} | "
            f"{d['late_p99_ms']:.2f} → {s['late_p99_ms']:.2f} | {_num(s['late_max_ms'], '{:.2f}')} | "
            f"{s['coalesced_events']} (direct {d['coalesced_events']}) |"
        )
    return out


def slow_table(res: dict) -> list[str]:
    out = [
        "| | streams | complete | failures | peak open at once | RSS before MiB | RSS peak MiB | "
        "RSS after MiB | KB per stream above idle | wall time s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in RELAYS:
        s = _get(res, name, "slow")
        if not s:
            continue
        kinds = ", ".join(f"{k}: {v}" for k, v in s["failure_kinds"].items())
        out.append(
            f"| {label} | {s['streams']:,} | {s['ok']:,} | {s['failures']}{f' ({kinds})' if kinds else ''} | "
            f"{s['peak_open']:,} | {s['rss_before'] / MIB:.1f} | {s['rss_peak'] / MIB:.1f} | "
            f"{s['rss_after'] / MIB:.1f} | {s['kb_per_stream']:.1f} | {s['seconds']:.1f} |"
        )
    return out


def profile_section(res: dict) -> list[str]:
    prof = res.get("profile")
    if not prof:
        return [f'Profile: {NM} (see "Not measured").']
    n = prof["samples"] or 1
    secs = res["settings"]["profile_seconds"]
    busy = 100 * prof["samples"] / (secs * 200)
    out = [
        f"py-spy `--gil --threads`, {secs} s at 200 samples/s, on the embedded relay under wrk with 64 connections. "
        "Only samples where a thread held the GIL are kept: one process runs one thread of Python at a time, so "
        f"GIL time is what caps its throughput. {prof['samples']:,} samples: the GIL was held {busy:.0f}% of "
        "the time. The flame graph of a second recording (same flags, without `--threads`) is "
        "[bench-profile.svg](bench-profile.svg).",
        "",
        "GIL time by thread:",
        "",
        "| thread | share |",
        "|---|---:|",
    ]
    out += [f"| {t} | {100 * c / n:.1f}% |" for t, c in prof.get("threads", [])]
    groups = prof.get("groups", {})
    relay_own = dict(prof["areas"]).get("relay (oneproxy)", 0)
    out += [
        "",
        "In short: writing usage rows through Django's database connection (`billing/usage_sink.py`, in the "
        f"relay's DB worker thread) held the GIL {100 * groups.get('usage', 0) / n:.0f}% of the time; the "
        "per-request proxy and `.netrc` lookups that aiohttp's `trust_env=True` makes (`get_env_proxy_for_url`, "
        "`netrc_from_env`, `to_thread`, and the executor threads they run on) "
        f"{100 * groups.get('trust_env', 0) / n:.0f}%; code in `relay/` itself, as innermost frame, "
        f"{100 * relay_own / n:.0f}%. The rest is the HTTP machinery the floor "
        "pays as well (uvicorn, httptools, aiohttp, asyncio).",
    ]
    out += ["", "GIL time by area of code (the innermost Python frame):", "", "| area | share |", "|---|---:|"]
    out += [f"| {area} | {100 * c / n:.1f}% |" for area, c in prof["areas"]]
    out += ["", "Hottest functions by own time:", "", "| function | own |", "|---|---:|"]
    out += [f"| `{f}` | {100 * c / n:.1f}% |" for f, c in prof["own"]]
    out += [
        "",
        "oneproxy relay functions by total time (including what they call):",
        "",
        "| function | total |",
        "|---|---:|",
    ]
    out += [f"| `{f}` | {100 * c / n:.1f}% |" for f, c in prof["total_relay"]]
    if prof.get("watch"):
        out += ["", "Other functions by total time:", "", "| function | total |", "|---|---:|"]
        out += [f"| `{f}` | {100 * c / n:.1f}% |" for f, c in prof["watch"]]
    return out


def _split(lat: dict, group: str, direct_ms: float) -> str:
    """One sentence: where a group of requests' time went, by Server-Timing."""
    b = (lat.get("breakdown") or {}).get(group)
    if not b:
        return ""
    typical = group == "typical"
    what = "A typical request" if typical else f"The slowest 1% ({b['requests']} requests)"
    budget = 0.5 if typical else 2.0
    own = b["gateway_ms"] + b["ledger_ms"]
    verdict = (
        f" The relay's own work and its ledger together are within the {budget:g} ms target; the rest is the hops "
        "a relay adds, which the floor pays too."
        if own <= budget
        else f" The relay's own work and its ledger together ({own:.3f} ms) are over the {budget:g} ms target."
    )
    return (
        f" {what} took {b['total_ms']:.3f} ms at the client; by the relay's Server-Timing header, "
        f"{b['gateway_ms']:.3f} ms of it was the relay's own work, {b['ledger_ms']:.3f} ms the hold and the "
        f"settlement, {b['upstream_ms']:.3f} ms waiting on the upstream (the direct requests' "
        f"{'p50' if typical else 'p99'}: {direct_ms:.3f} ms, the client's own costs included), and "
        f"{b['outside_ms']:.3f} ms outside the relay's handler (the hops to and from it, their wake-ups, "
        f"uvicorn).{verdict}"
    )


def gaps_section(res: dict) -> list[str]:
    """Why each target this run missed is missed, from this run's own figures."""
    out: list[str] = []
    floor, emb, svc = _wrk_at(res, "floor", 64), _wrk_at(res, "embedded", 64), _wrk_at(res, "service", 64)
    prof = res.get("profile") or {}
    n = prof.get("samples") or 0
    areas = dict(prof.get("areas", []))

    def share(*names: str) -> float:
        return sum(areas.get(a, 0) for a in names) / n if n else 0.0

    if floor and emb and emb["rps"] < 0.4 * floor["rps"] and emb.get("cpu_ms_per_request"):
        cpu, floor_cpu = emb["cpu_ms_per_request"], floor["cpu_ms_per_request"]
        machinery = share("aiohttp client", "uvicorn + httptools", "asyncio / uvloop", "yarl (URLs)", "multidict")
        settle = share("Django (ORM, in the DB thread)", "billing (in the DB thread)", "sqlite3", "DB worker thread")
        own = share("relay (oneproxy)")
        line = (
            f"- **Embedded throughput ({_pct(emb['rps'], floor['rps'])} of the floor).** The relay spends "
            f"{cpu:.3f} ms of CPU per request against the floor's {floor_cpu:.3f} ms. By the profile above, "
            f"the HTTP machinery the floor runs too (aiohttp client, uvicorn, asyncio) is {100 * machinery:.0f}% of "
            f"the relay's GIL time, about {machinery * cpu:.3f} ms a request — more than the floor's whole request: "
            "the same library functions take longer in the relay's process, whose heap (Django, the apps) is "
            "over twice the floor's; we have not pinned that down further. Code in `relay/` (auth, routing, "
            f"holds, metering, the usage journal) {100 * own:.0f}%, about {own * cpu:.3f} ms; settling usage into "
            f"SQLite in the DB thread {100 * settle:.0f}%, about {settle * cpu:.3f} ms."
        )
        if svc and svc.get("cpu_ms_per_request"):
            line += (
                f" SQLite runs inside the relay's process; in service mode the same writes run in the PostgreSQL "
                f"server, and the relay's CPU per request is {svc['cpu_ms_per_request']:.3f} ms "
                f"({_pct(svc['rps'], floor['rps'])} of the floor)."
            )
        out.append(line)
    for name, label in (("embedded", "Embedded"), ("service", "Service")):
        lat, direct = _get(res, name, "latency"), _get(res, name, "latency_direct")
        flat, fdirect = _get(res, "floor", "latency"), _get(res, "floor", "latency_direct")
        c1, floor_c1 = _wrk_at(res, name, 1), _wrk_at(res, "floor", 1)
        if not (lat and direct and flat and fdirect and c1 and floor_c1):
            continue
        added, floor_added = lat["p50_ms"] - direct["p50_ms"], flat["p50_ms"] - fdirect["p50_ms"]
        redis = " and the two Redis round trips it waits for (the hold, the settlement)" if name == "service" else ""
        if added > 0.5:
            out.append(
                f"- **{label}, added p50 at 1 connection ({added:+.3f} ms).** At this rate the floor itself adds "
                f"{floor_added:+.3f} ms though it spends {floor_c1['cpu_ms_per_request']:.3f} ms of CPU per request: "
                "between requests the cores go idle, and every extra process hop (client → relay → upstream → "
                f"relay) pays a wake-up.{_split(lat, 'typical', direct['p50_ms'])} What the relay adds beyond the "
                f"floor, {added - floor_added:+.3f} ms, "
                f"is its extra CPU per request at one connection ({c1['cpu_ms_per_request']:.3f} against "
                f"{floor_c1['cpu_ms_per_request']:.3f} ms){redis}."
            )
        added99, floor99 = lat["p99_ms"] - direct["p99_ms"], flat["p99_ms"] - fdirect["p99_ms"]
        if added99 > 2.0:
            out.append(
                f"- **{label}, added p99 at 1 connection ({added99:+.3f} ms).** The floor's own is {floor99:+.3f} ms."
                f"{_split(lat, 'slowest', direct['p99_ms'])} Periodic batches in the relay's DB thread "
                "(settlement, snapshot polls) start in a gap between requests when one comes within 0.25 s "
                "(`Quiet` in relay/db.py), so at this rate they rarely meet a request."
                + (
                    " In service mode PostgreSQL and Redis, which are not pinned, also run on the relay's core "
                    "(the share of other processes on it is in the last table of (a)), and the hold and the "
                    "settlement are Redis round trips inside the gateway's time."
                    if name == "service"
                    else ""
                )
            )
    for name, label in (("embedded", "Embedded"), ("service", "Service")):
        st, sd = _get(res, name, "streams"), _get(res, name, "streams_direct")
        ft, fd = _get(res, "floor", "streams"), _get(res, "floor", "streams_direct")
        if not (st and sd and ft and fd):
            continue
        added, floor_added = st["ttfb_p50_ms"] - sd["ttfb_p50_ms"], ft["ttfb_p50_ms"] - fd["ttfb_p50_ms"]
        if added <= 1.0:
            continue
        split = (
            f" By the Server-Timing header the relay sends at the stream's start, its own work before the first "
            f"byte took {st['gateway_p50_ms']:.3f} ms (p50), the hold {st['ledger_p50_ms']:.3f} ms, and the wait "
            f"for the upstream's answer {st['upstream_p50_ms']:.3f} ms (the direct TTFB p50, the client's own "
            f"costs included: {sd['ttfb_p50_ms']:.3f} ms)."
            if st.get("gateway_p50_ms") is not None
            else ""
        )
        out.append(
            f"- **{label}, stream time-to-first-byte ({added:+.3f} ms).** The floor adds {floor_added:+.3f} ms "
            f"here, from the same wake-ups as above.{split} The relay's further {added - floor_added:+.3f} ms over "
            "the floor is mostly that work: auth, the prompt count for the hold, the hold itself"
            + (" (a Redis round trip)" if name == "service" else "")
            + ", and the usage request it adds to the body."
        )
    for name, label in (("embedded", "Embedded"), ("service", "Service")):
        st, sd = _get(res, name, "streams"), _get(res, name, "streams_direct")
        if not (st and sd):
            continue
        if st["coalesced_events"] <= sd["coalesced_events"] and st["late_p99_ms"] - sd["late_p99_ms"] <= 1.0:
            continue
        chunks = st["streams"] * res["settings"]["stream_chunks"]
        out.append(
            f"- **{label}, chunks coalesced or late ({st['coalesced_events']} coalesced against "
            f"{sd['coalesced_events']} direct, of "
            f"{chunks:,}).** The relay sends what each upstream read holds as soon as it is read "
            "(`_pump` in relay/app.py), so two chunks leave together only when they arrived together, or when the "
            "client, on a core busy with the upstreams, reads two at once (the direct streams' count shows how "
            "often that happens to them in this run). Lateness p99 (the "
            "relay's chunks pass two processes on shared cores, the direct ones one): "
            f"{st['late_p99_ms']:.2f} ms against {sd['late_p99_ms']:.2f} ms direct."
        )
    idle = [(label, _get(res, name, "rss_idle")) for name, label in (("embedded", "embedded"), ("service", "service"))]
    over = [(label, rss) for label, rss in idle if rss is not None and rss > 100 * MIB]
    if over:
        figures = ", ".join(f"{label} {rss / MIB:.1f} MiB" for label, rss in over)
        out.append(
            f"- **Idle RSS ({figures}).** The relay process also serves Django (admin, `/api/`): Django, the "
            "apps and their models, Celery's app object, redis-py and psycopg are loaded at start."
        )
    return out or ["Every target was met in this run."]


def diagnostics_section(res: dict) -> list[str]:
    te = _wrk_at(res, "floor_trust_env", 64)
    floor = _wrk_at(res, "floor", 64)
    if not te or not floor:
        return [f"The floor with `trust_env=True`: {NM}."]
    setting = {
        True: "The relay's aiohttp session is created with `trust_env=True` (as read from `relay/` at this run), "
        "so this cost is in its figures above.",
        False: "The relay's aiohttp session is created with `trust_env=False` (as read from `relay/` at this "
        "run): this is what that choice saves.",
    }.get(res.get("relay_trust_env"), "")
    return [
        "With `trust_env=True`, aiohttp looks up `~/.netrc` (`run_in_executor`) and the proxy environment "
        "(`asyncio.to_thread`) on every request: two thread-pool round trips per upstream call. " + setting,
        "The same floor with only that setting changed, 64 connections, run right after the floor in each round "
        "(better round shown):",
        "",
        "| | requests/s | CPU ms per request | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        f"| floor (`trust_env=False`) | {floor['rps']:,.0f} | {_num(floor['cpu_ms_per_request'], '{:.3f}')} | "
        f"{floor['p50_ms']:.2f} | {floor['p99_ms']:.2f} |",
        f"| floor, `trust_env=True` | {te['rps']:,.0f} | {_num(te['cpu_ms_per_request'], '{:.3f}')} | "
        f"{te['p50_ms']:.2f} | {te['p99_ms']:.2f} |",
        "",
        f"`trust_env=True` alone leaves the floor {_pct(te['rps'], floor['rps'])} of its throughput.",
    ]


def plots(res: dict, docs: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    conc = res["settings"]["concurrency"]
    made = []
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for name, label in TARGETS:
        rows = [_wrk_at(res, name, c) for c in conc]
        pts = [(c, r["rps"]) for c, r in zip(conc, rows, strict=False) if r]
        if pts:
            ax.plot(*zip(*pts, strict=False), marker="o", label=label, color=COLORS[name])
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="connections (wrk)",
        ylabel="requests/s (2xx)",
        title="Non-stream chat completions: requests/s",
    )
    ax.set_xticks(conc, [str(c) for c in conc])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    fig.savefig(docs / "bench-rps.png", dpi=110)
    plt.close(fig)
    made.append("bench-rps.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")):
        for name, label in RELAYS:
            pts = []
            for c in conc:
                row, base = _wrk_at(res, name, c), _wrk_at(res, "direct", c)
                if row and base:
                    # Log scale: an added latency at or below zero is drawn at 0.01 ms.
                    pts.append((c, max(row[key] - base[key], 0.01)))
            if pts:
                ax.plot(*zip(*pts, strict=False), marker="o", label=label, color=COLORS[name])
        ax.set(xscale="log", yscale="log", xlabel="connections (wrk)", title=f"added {title} latency over direct")
        ax.set_xticks(conc, [str(c) for c in conc])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms")
    axes[0].legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(docs / "bench-latency.png", dpi=110)
    plt.close(fig)
    made.append("bench-latency.png")
    return made


def _commands(commands: list[str]) -> list[str]:
    """The commands in order, each wrk command once with its connection counts."""
    order: list[str] = []
    counts: dict[str, list[str]] = {}
    for cmd in commands:
        match = re.search(r" -c(\d+) ", cmd) if " wrk " in cmd else None
        key = cmd[: match.start()] + " -c<N> " + cmd[match.end() :] if match else cmd
        if key not in counts:
            order.append(key)
            counts[key] = []
        if match and match.group(1) not in counts[key]:
            counts[key].append(match.group(1))
    return [f"{key}    # N = {', '.join(counts[key])}" if counts[key] else key for key in order]


def write(res: dict, docs: Path) -> None:
    docs.mkdir(exist_ok=True)
    m, v, st = res["machine"], res["versions"], res["settings"]
    images = plots(res, docs)
    pk = v.get("packages", {})
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {m['date']} (commit {v['commit']}); the whole run took "
        f"{res['elapsed_seconds'] / 60:.1f} minutes. Every figure below was measured in that one run, on this "
        "machine, over loopback; ratios compare figures of the same run. Rerun with `make bench` "
        "(it installs nginx, wrk and its own tools, and LiteLLM through `make bench-peers`).",
        "",
        "What is compared:",
        "",
        "- **direct** — the client talks to the upstream itself: the headroom above every relay. The instant "
        "upstream is nginx answering `POST /v1/chat/completions` with one fixed chat.completion body "
        "(`return 200`, no access log, one worker); the paced one is `bench/sse_upstream.py` (aiohttp).",
        "- **floor** — `bench/floor.py`, a bare ASGI app on uvicorn (uvloop, httptools) forwarding the body "
        "with one shared aiohttp session: no auth, no routing, no billing.",
        "- **oneproxy embedded** — `uvicorn oneproxy.asgi:application` (one process) on a fresh SQLite "
        "database: auth, routing, holds, settlement and usage rows for every request.",
        "- **oneproxy service** — the same process with PostgreSQL and Redis (a fresh database and Redis db "
        f"{9}, removed afterwards): the hold and the settlement are Redis round trips, usage goes through a "
        "Redis stream into PostgreSQL.",
        f"- **LiteLLM Proxy** {v.get('litellm') or ''} — no database, one worker (`litellm --num_workers 1`), "
        "the same upstreams, installed by `make bench-peers` into `.venv-litellm`.",
        "",
        "All of them are one process on one core: the process under test is pinned to core "
        f"{','.join(map(str, st['server_cpus']))}; wrk (one thread), the upstreams, the Python clients and py-spy "
        f'share core {",".join(map(str, st["load_cpus"]))}. So "direct" is nginx and wrk sharing one core, '
        "and PostgreSQL and Redis (service mode) are not pinned and take CPU from both cores.",
        "",
        "The machine is not reserved for the benchmark: other work may run on it at the same time. Load average "
        f"{_loadavg(res.get('loadavg_start'))} at the start of the run and {_loadavg(res.get('loadavg_end'))} at "
        "the end; the share of the server core taken by other processes during each wrk run is in the last "
        "table of (a). Latency and stream figures interleave the relay with the direct path request by request, "
        "so both meet the same conditions and their difference stays meaningful.",
        "",
        "## Targets",
        "",
        *targets_table(res),
        "",
        "## (a) Non-stream chat completions",
        "",
        f"`wrk -t1 -c N -d {st['wrk_seconds']:g}s` with `bench/post.lua` (a 2-message chat request, "
        "`max_tokens` 32), after a 2-second warm-up of every target at 16 connections. The runs go round-robin: "
        f"for each concurrency, every target in turn; the whole sequence {st.get('rounds', 1)} times. Each "
        "figure is the round with more requests/s for that target and concurrency (outside load only ever "
        "lowers throughput). Runs at 256 connections last twice as long: a slow target needs seconds to answer "
        "its first 256 requests, and a short run would end before the first answers arrive.",
        "",
        *throughput_tables(res),
        "",
        *[f"![{img}]({img})" for img in images],
        "",
        "### CPU and memory",
        "",
        "CPU per request = the process's utime + stime (`/proc/PID/stat`, all threads, children included) over a "
        'wrk run, divided by the requests it completed. For "direct" it is nginx\'s. RSS is `VmRSS` from '
        "`/proc/PID/status`.",
        "",
        *cpu_rss_table(res),
        "",
        "Share of the server core used by processes other than the one under test during each wrk run "
        '(`/proc/stat`; for "direct", nginx runs on the load core, so this is all foreign load):',
        "",
        *others_table(res),
        "",
        "## Latency at a fixed low rate, one connection",
        "",
        f"`bench/clients.py`: one keep-alive connection to the relay and one to the direct upstream; requests "
        f"alternate between them, one every {1000 / st['latency_rate']:.0f} ms (up to {st['latency_requests']:,} "
        'pairs or 12 s, after 100 warm-up requests each), timed in the client. "Added" is the relay\'s '
        "percentile minus the interleaved direct requests' percentile.",
        "",
        *latency_table(res),
        "",
        "Where the relay's time went, from the `Server-Timing` header it sends with each answer (`ledger`: the hold "
        "and the settlement, Redis round trips in service mode; `upstream`: waiting on the upstream, connection "
        "and body read included; `gateway`: the rest of its time from the start of the request to the response, "
        "its own work), against the client's total; \"outside\" is the rest: the request reaching the relay's "
        "handler and the answer getting back, with the wake-ups and uvicorn's parsing on the way. Means over the "
        "requests of each group:",
        "",
        *breakdown_table(res),
        "",
        "## (b) Streams of 64 chunks",
        "",
        f"{st['streams']} streams per target one after another, alternating with as many direct streams (after 2 "
        "warm-up pairs); the upstream sends chunk i at "
        f"start + i × {st['stream_interval'] * 1000:g} ms. TTFB = request sent → first body byte; total = → end of "
        "stream. A chunk's lateness is its arrival minus (first chunk's arrival + i × interval), so it shows any "
        'delay a relay adds mid-stream; "coalesced" counts content chunks that reached the client in the same '
        "read as another one.",
        "",
        *stream_table(res),
        "",
        "## (c) Concurrent slow streams",
        "",
        f"{st['slow_streams']:,} streams opened within 2 s and held together; each gets {st['slow_chunks']} chunks, "
        "one per second, then `[DONE]` (20 s). A stream counts as complete with all its chunks and `[DONE]`. RSS "
        'of the process that holds them, sampled every 0.5 s; "before" is right before the streams open '
        '(after the earlier scenarios), "after" is 1 s after they end; "per stream" is (peak − before) / streams. '
        "The floor's figures are from its process in front of the stream upstream.",
        "",
        *slow_table(res),
        "",
        "## Profile of the relay",
        "",
        *profile_section(res),
        "",
        "## Where the gaps come from",
        "",
        "For each target above that this run missed, what its own figures say about why:",
        "",
        *gaps_section(res),
        "",
        "### aiohttp's `trust_env`, measured on the floor",
        "",
        *diagnostics_section(res),
        "",
        "## Not measured, and notes",
        "",
    ]
    if res["not_measured"] or res["notes"]:
        lines += [f"- {n['what']}: {NM} — {n['why']}" for n in res["not_measured"]]
        lines += [f"- {n}" for n in res["notes"]]
    else:
        lines += ["- Every scenario above ran for every target it lists."]
    lines += [
        "- LiteLLM Proxy was not put through the 2,000-stream scenario: the issue asks it of oneproxy; the floor "
        "ran it as the reference.",
        "- The bench token has no rate limits (RPM, TPM, concurrency) set, so enforcing them is not part of these "
        "figures; billing (holds, settlement, usage rows) is.",
        '- "Tests guard the design" (zero queries and zero thread hops on a cached request) is the test suite\'s '
        "job; this benchmark does not check it.",
        "",
        "## Machine and versions",
        "",
        f"- {m['nproc']} CPUs: {m['cpu']}; {m['memory_gib']} GiB memory; {m['os']}, Linux {m['kernel']}",
        f"- Python {v['python']}; " + ", ".join(f"{k} {val}" for k, val in pk.items()),
        f"- {v['nginx']}; {v['wrk']}; PostgreSQL {v['postgresql']}; Redis {v['redis']}; "
        f"LiteLLM {v.get('litellm') or NM}",
        "",
        "## Exact commands",
        "",
        "Ports are picked free at start ("
        + ", ".join(f"{name}: `{url}`" for name, url in res.get("urls", {}).items())
        + "); `<key>` is the relay key the setup script printed. The Python clients (latency, streams, slow "
        "streams) run inside the driver, `bench/run.py`.",
        "",
        "```",
        *_commands(res["commands"]),
        "```",
        "",
    ]
    (docs / "BENCHMARKS.md").write_text("\n".join(lines))
