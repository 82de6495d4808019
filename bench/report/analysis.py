"""The report's analysis: where the time went (profile, Server-Timing) and why
each missed target is missed, from the run's own figures."""

from __future__ import annotations

from bench.report import targets
from bench.report.tables import (
    MIB,
    NM,
    _get,
    _num,
    _pct,
    _wrk_at,
)


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
    budget = targets.ADDED_LATENCY_MS["p50_ms" if typical else "p99_ms"]
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

    if floor and emb and emb["rps"] < targets.EMBEDDED_SHARE_OF_FLOOR * floor["rps"] and emb.get("cpu_ms_per_request"):
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
        if added > targets.ADDED_LATENCY_MS["p50_ms"]:
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
        if added99 > targets.ADDED_LATENCY_MS["p99_ms"]:
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
        if added <= targets.STREAM_ADDED_TTFB_MS:
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
        if (
            st["coalesced_events"] <= sd["coalesced_events"]
            and st["late_p99_ms"] - sd["late_p99_ms"] <= targets.STREAM_EXTRA_LATENESS_MS
        ):
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
