"""The report's tables, one per measurement, from one run's results."""

from __future__ import annotations

import math

from bench.report import targets

# The systems every measurement runs against, in the order tables list them.
SYSTEMS = [
    ("direct", "direct"),
    ("floor", "floor"),
    ("embedded", "oneproxy embedded"),
    ("service", "oneproxy service"),
    ("litellm", "LiteLLM Proxy"),
]
RELAYS = [t for t in SYSTEMS if t[0] != "direct"]
COLORS = {name: f"C{i}" for i, (name, _) in enumerate(SYSTEMS)}  # the same colour for a target in every plot
MIB = 2**20
NM = "not measured"


# --- formatting -------------------------------------------------------------------


def _num(v, fmt: str = "{:,.0f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NM
    return fmt.format(v)


def _wrk_at(res: dict, name: str, c: int) -> dict | None:
    for row in res.get("targets", {}).get(name, {}).get("wrk", []):
        if row["connections"] == c:
            return row
    return None


def _ratio(a, b) -> str:
    if a is None or b is None or not b:
        return NM
    return f"{a / b:.2f}×" if a / b < 10 else f"{a / b:.1f}×"


def _pct(a, b) -> str:
    if a is None or b is None or not b:
        return NM
    return f"{100 * a / b:.0f}%"


def _get(res: dict, name: str, *path: str):
    node = res.get("targets", {}).get(name)
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _loadavg(values) -> str:
    return " / ".join(f"{x:.2f}" for x in values) + " (1 / 5 / 15 min)" if values else NM


def _verdict(ok: bool | None) -> str:
    return NM if ok is None else ("**met**" if ok else "**not met**")


# --- the report ---------------------------------------------------------------------


def targets_table(res: dict) -> list[str]:
    """Issue 7's targets against this run's figures."""
    rows = []

    def rps(name: str, c: int = 64):
        row = _wrk_at(res, name, c)
        return row["rps"] if row else None

    floor, emb, svc, lite = rps("floor"), rps("embedded"), rps("service"), rps("litellm")
    rows.append(
        (
            f"Embedded, non-stream, 64 connections: ≥ {targets.EMBEDDED_SHARE_OF_FLOOR:.0%} of the floor's requests/s",
            f"{_num(emb)} vs floor {_num(floor)} req/s = {_pct(emb, floor)}",
            _verdict(None if emb is None or floor is None else emb >= targets.EMBEDDED_SHARE_OF_FLOOR * floor),
        )
    )
    rows.append(
        (
            f"… that is ≥ ~{targets.EMBEDDED_TIMES_LITELLM}× LiteLLM",
            f"{_ratio(emb, lite)} LiteLLM ({_num(lite)} req/s)",
            _verdict(None if emb is None or lite is None else emb >= targets.EMBEDDED_TIMES_LITELLM * lite),
        )
    )
    rows.append(
        (
            "Service mode (PostgreSQL + Redis, billing on), 64 connections: "
            f"≥ {targets.SERVICE_SHARE_OF_FLOOR:.0%} of the floor",
            f"{_num(svc)} req/s = {_pct(svc, floor)} of the floor",
            _verdict(None if svc is None or floor is None else svc >= targets.SERVICE_SHARE_OF_FLOOR * floor),
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
        for pct, limit in targets.ADDED_LATENCY_MS.items():
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
                f"Streaming ({label}): added time-to-first-byte p50 ≤ {targets.STREAM_ADDED_TTFB_MS:g} ms",
                f"{_num(added, '{:+.3f}')} ms",
                _verdict(None if added is None else added <= targets.STREAM_ADDED_TTFB_MS),
            )
        )
        co = _get(res, name, "streams", "coalesced_events")
        dco = _get(res, name, "streams_direct", "coalesced_events")
        late = _get(res, name, "streams", "late_p99_ms")
        extra = None if late is None or dl is None else late - dl
        # The client's own reads coalesce now and then on a busy core (the
        # direct streams show it too), so the relay is judged against them.
        ok = (
            None
            if co is None or dco is None or extra is None
            else (co <= dco and extra <= targets.STREAM_EXTRA_LATENESS_MS)
        )
        rows.append(
            (
                f"Streaming ({label}): chunks never coalesced or delayed (no more coalesced chunks than the "
                f"interleaved direct streams; chunk lateness p99 within {targets.STREAM_EXTRA_LATENESS_MS:g} ms "
                "of theirs)",
                f"{_num(co)} coalesced (direct {_num(dco)}); lateness p99 {_num(extra, '{:+.3f}')} ms against direct",
                _verdict(ok),
            )
        )
    for name, label in (("embedded", "embedded"), ("service", "service")):
        slow = _get(res, name, "slow")
        if slow is None:
            rows.append(
                (
                    f"{targets.CONCURRENT_STREAMS:,} concurrent streams ({label}): "
                    f"≤ {targets.KB_PER_STREAM} KB RSS per stream "
                    "above idle, zero failures",
                    NM,
                    _verdict(None),
                )
            )
            continue
        ok = slow["kb_per_stream"] <= targets.KB_PER_STREAM and slow["failures"] == 0 and slow["ok"] == slow["streams"]
        rows.append(
            (
                f"{slow['streams']:,} concurrent streams ({label}): "
                f"≤ {targets.KB_PER_STREAM} KB RSS per stream above idle, "
                "zero failures",
                f"{slow['kb_per_stream']:.1f} KB/stream; {slow['failures']} failures; "
                f"{slow['ok']:,} complete; peak {slow['peak_open']:,} open at once",
                _verdict(ok if slow["streams"] >= targets.CONCURRENT_STREAMS else None),
            )
        )
    for name, label in (("embedded", "embedded"), ("service", "service")):
        idle = _get(res, name, "rss_idle")
        rows.append(
            (
                f"Idle RSS ({label}) ≤ {targets.IDLE_RSS_MIB} MiB",
                f"{_num(idle and idle / MIB, '{:.1f}')} MiB",
                _verdict(None if idle is None else idle <= targets.IDLE_RSS_MIB * MIB),
            )
        )
    for name, label in (("embedded", "embedded"), ("service", "service")):
        for scenario in ("OpenAI client → anthropic channel", "Anthropic client → openai channel"):
            got = _format_rps(res, name, scenario)
            rows.append(
                (
                    f"(issue 14) {scenario} ({label}), 64 connections: "
                    f"≥ {targets.CONVERTED_SHARE_OF_FLOOR:.0%} of the floor",
                    f"{_num(got)} req/s = {_pct(got, floor)} of the floor",
                    _verdict(None if got is None or floor is None else got >= targets.CONVERTED_SHARE_OF_FLOOR * floor),
                )
            )
        tiny = _format_rps(res, name, "pass-through, 0.1 KB prompt")
        for size in ("12 KB", "60 KB"):
            got = _format_rps(res, name, f"pass-through, {size} prompt")
            rows.append(
                (
                    f"(issue 14) A {size} prompt ({label}): ≥ {targets.LARGE_PROMPT_SHARE_OF_TINY:.0%} of a "
                    "0.1 KB prompt's requests/s",
                    f"{_num(got)} vs {_num(tiny)} req/s = {_pct(got, tiny)}",
                    _verdict(None if got is None or not tiny else got >= targets.LARGE_PROMPT_SHARE_OF_TINY * tiny),
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
        + " | ".join(label for _, label in SYSTEMS)
        + " | embedded / floor | embedded / LiteLLM | service / floor | service / LiteLLM |",
        "|---:|" + "---:|" * (len(SYSTEMS) + 4),
    ]
    for c in conc:
        cells = [_wrk_at(res, name, c) for name, _ in SYSTEMS]
        v = {name: (row["rps"] if row else None) for (name, _), row in zip(SYSTEMS, cells, strict=False)}
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
        "| connections | " + " | ".join(label for _, label in SYSTEMS) + " |",
        "|---:|" + "---:|" * len(SYSTEMS),
    ]
    for c in conc:
        cells = []
        for name, _ in SYSTEMS:
            row = _wrk_at(res, name, c)
            cells.append(f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}" if row else NM)
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    errors = [
        (label, row["connections"], row["errors"])
        for name, label in SYSTEMS
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
    out = ["| | " + " | ".join(label for _, label in SYSTEMS) + " |", "|---|" + "---:|" * len(SYSTEMS)]
    for c in conc:
        cells = []
        for name, _ in SYSTEMS:
            row = _wrk_at(res, name, c)
            cells.append(_num(row and row["cpu_ms_per_request"], "{:.3f}"))
        out.append(f"| CPU ms per request at {c} connection{'s' if c != 1 else ''} | " + " | ".join(cells) + " |")
    for key, label in (
        ("rss_idle", "RSS idle, after start, before any request (MiB)"),
        ("rss_after_load", "RSS after the wrk runs (MiB)"),
    ):
        out.append(
            f"| {label} | "
            + " | ".join(_num(_get(res, n, key) and _get(res, n, key) / MIB, "{:.1f}") for n, _ in SYSTEMS)
            + " |"
        )
    return out


def others_table(res: dict) -> list[str]:
    """How busy the server core was with processes not under test."""
    conc = res["settings"]["concurrency"]
    out = ["| connections | " + " | ".join(label for _, label in SYSTEMS) + " |", "|---:|" + "---:|" * len(SYSTEMS)]
    for c in conc:
        cells = []
        for name, _ in SYSTEMS:
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


def _format_rps(res: dict, name: str, scenario: str) -> float | None:
    for row in _get(res, name, "formats") or ():
        if row["scenario"] == scenario:
            return row["rps"]
    return None


def formats_table(res: dict) -> list[str]:
    """(b) Converted paths and prompt sizes: requests/s, against the floor and the tiny prompt."""
    scenarios = res.get("settings", {}).get("format_scenarios") or []
    floor = _wrk_at(res, "floor", 64)
    floor_rps = floor["rps"] if floor else None
    out = [
        "| scenario | floor req/s | embedded req/s | of the floor | service req/s | of the floor | "
        "embedded p99 ms | embedded CPU/req ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        rows = {}
        for name in ("floor", "embedded", "service"):
            for row in _get(res, name, "formats") or ():
                if row["scenario"] == scenario:
                    rows[name] = row
        emb, svc, fl = rows.get("embedded"), rows.get("service"), rows.get("floor")
        out.append(
            f"| {scenario} | {_num(fl and fl['rps'])} | {_num(emb and emb['rps'])} | "
            f"{_pct(emb and emb['rps'], floor_rps)} | {_num(svc and svc['rps'])} | "
            f"{_pct(svc and svc['rps'], floor_rps)} | "
            f"{_num(emb and emb['p99_ms'], '{:.2f}')} | {_num(emb and emb['cpu_ms_per_request'], '{:.3f}')} |"
        )
    if len(out) == 2:
        return [f"Formats and prompt sizes: {NM}."]
    return out


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
