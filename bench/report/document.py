"""docs/BENCHMARKS.md itself: the parts put together, with the commands to rerun."""

from __future__ import annotations

import re
from pathlib import Path

from bench.report.analysis import diagnostics_section, gaps_section, profile_section
from bench.report.plots import plots
from bench.report.tables import (
    NM,
    _loadavg,
    breakdown_table,
    cpu_rss_table,
    formats_table,
    latency_table,
    others_table,
    slow_table,
    stream_table,
    targets_table,
    throughput_tables,
)


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
        "### Converted paths and prompt sizes",
        "",
        f"`wrk -c {st.get('format_connections', 64)}` with `bench/post.lua` in its other modes: pass-through "
        "(`BENCH_FORMAT=openai`, model `bench-instant` on the `openai` channel) with the user message padded "
        "with English text to 0.1, 12 and 60 KB (`BENCH_PROMPT_BYTES`); an OpenAI client on the `anthropic` "
        "channel (model `bench-claude`: nginx answers `/v1/messages` with a fixed Anthropic message, so the "
        "request and the answer are converted); an Anthropic client (`BENCH_FORMAT=anthropic`, `/v1/messages`, "
        "`x-api-key`) on the `openai` channel (converted both ways too). Round-robin and best of the rounds, as "
        'above; "of the floor" is against the floor\'s requests/s at 64 connections in (a), its pass-through of '
        "the same short request. The floor's own rows show what the larger bodies cost a bare forward.",
        "",
        *formats_table(res),
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
