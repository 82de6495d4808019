"""`make bench`: measure oneproxy against the direct baseline, the bare
pass-through floor and LiteLLM Proxy in one run, on loopback, and write
docs/BENCHMARKS.md with plots.

The machine may be shared, so the run is arranged to let outside load hit
every target alike: all targets are started up front (idle ones cost
nothing), throughput runs go round-robin over the targets, twice, keeping
each target's better round, and latency and stream measurements interleave
each relay with the direct path request by request.

Every process under test is pinned to core 0; load generators, upstreams
and this driver share core 1 (see procs.py). Whatever fails is written down
and the rest still runs. Everything started here is stopped on the way out,
on Ctrl-C and on errors too.

Run from the project root: .venv-bench/bin/python -m bench.run
Shorter runs for development: BENCH_SECONDS=2 BENCH_SLOW_STREAMS=200 ...
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import clients, litellm_peer, procs, report, upstream
from bench.load import wait_idle, wrk
from bench.procs import Proc, Supervisor, free_port, rss_bytes, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV = ROOT / ".venv"
LITELLM_VENV = ROOT / ".venv-litellm"
PY_SPY = ROOT / ".venv-bench" / "bin" / "py-spy"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# Scenario sizes. The defaults keep the whole run under ten minutes.
SECONDS = _env_float("BENCH_SECONDS", 4)  # per wrk run
ROUNDS = _env_int("BENCH_ROUNDS", 2)  # wrk runs per target and concurrency; the better one counts
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,16,64,256").split(",")]
LATENCY_RATE = _env_float("BENCH_LATENCY_RATE", 200)  # requests/s at concurrency 1
LATENCY_REQUESTS = _env_int("BENCH_LATENCY_REQUESTS", 1000)  # pairs (relay + direct)
STREAMS = _env_int("BENCH_STREAMS", 20)  # paced 64-chunk streams per target
STREAM_CHUNKS = 64
STREAM_INTERVAL = _env_float("BENCH_STREAM_INTERVAL", 0.005)  # seconds between chunks
SLOW_STREAMS = _env_int("BENCH_SLOW_STREAMS", 2000)
SLOW_CHUNKS = 20
PROFILE_SECONDS = _env_int("BENCH_PROFILE_SECONDS", 10)

# (b) Formats and prompt sizes at FORMAT_CONNECTIONS: (scenario, path, client format, model, prompt bytes).
FORMAT_CONNECTIONS = 64
FORMAT_SCENARIOS = [
    ("pass-through, 0.1 KB prompt", "/v1/chat/completions", "openai", "bench-instant", 100),
    ("pass-through, 12 KB prompt", "/v1/chat/completions", "openai", "bench-instant", 12_000),
    ("pass-through, 60 KB prompt", "/v1/chat/completions", "openai", "bench-instant", 60_000),
    ("OpenAI client → anthropic channel", "/v1/chat/completions", "openai", "bench-claude", 100),
    ("Anthropic client → openai channel", "/v1/messages", "anthropic", "bench-instant", 100),
]

PG_URL = "postgres://postgres@127.0.0.1:5432"
REDIS_DB = 9
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


def seconds_for(connections: int) -> float:
    """wrk's run length: longer at 256 connections, where a slow relay takes
    seconds to answer its first wave of requests."""
    return SECONDS * 2 if connections >= 256 else SECONDS


def relay_trust_env() -> bool | None:
    """Whether the relay's aiohttp session trusts the environment, read from
    its source (the diagnostic in the report says whether it applies)."""
    found = set()
    for path in (ROOT / "relay").rglob("*.py"):
        # An argument (followed by "," or ")"), not a mention in a docstring.
        found.update(m == "True" for m in re.findall(r"trust_env\s*=\s*(True|False)\s*[,)]", path.read_text()))
    return found.pop() if len(found) == 1 else None


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


@dataclass
class Target:
    name: str
    url: str  # non-stream chat completions
    stream_url: str
    key: str
    proc: Proc | None  # CPU time and RSS are read from this process
    stream_proc: Proc | None = None  # the process holding streams, when not ``proc`` (the floor)
    slow: bool = False  # run the thousands-of-slow-streams scenario
    on_server_core: bool = True


class Bench:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tmp = Path(tempfile.mkdtemp(prefix="oneproxy-bench-"))
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        for old in (OUT / "logs").glob("*.log"):
            old.unlink()
        self.sup = Supervisor(OUT / "logs")
        self.results: dict = {"targets": {}, "notes": [], "not_measured": [], "profile": None}
        self.nginx_port = free_port()
        self.sse_port = free_port()
        self.cleanups: list[tuple[str, Callable[[], None]]] = []

    # --- helpers ----------------------------------------------------------

    def not_measured(self, what: str, why: str) -> None:
        print(f"  not measured: {what}: {why}", flush=True)
        self.results["not_measured"].append({"what": what, "why": why})

    def res(self, name: str) -> dict:
        return self.results["targets"].setdefault(name, {})

    def project_env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "ONEPROXY_"))}
        env["DJANGO_SETTINGS_MODULE"] = "oneproxy.settings"
        env.update(extra)
        return env

    def uvicorn(self, app: str, port: int) -> list[str]:
        return [
            str(VENV / "bin" / "uvicorn"),
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--workers",
            "1",
        ]

    @property
    def instant_base(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}/v1"

    @property
    def stream_base(self) -> str:
        return f"http://127.0.0.1:{self.sse_port}/v1"

    # --- upstreams ----------------------------------------------------------

    def start_upstreams(self) -> None:
        conf = upstream.nginx_config(self.tmp, self.nginx_port, cpu=min(procs.LOAD_CPUS))
        self.nginx = self.sup.start("nginx", ["nginx", "-c", str(conf), "-e", str(self.tmp / "nginx-error.log")])
        wait_for_port(self.nginx_port, self.nginx)
        argv = [str(VENV / "bin" / "python"), str(ROOT / "bench" / "sse_upstream.py"), "--port", str(self.sse_port)]
        self.sse = self.sup.start("sse-upstream", [*argv, "--interval", str(STREAM_INTERVAL)])
        wait_for_port(self.sse_port, self.sse)

    # --- targets ------------------------------------------------------------

    def start_litellm(self) -> Callable[[], Target] | None:
        """Start LiteLLM first (it is the slowest to come up); returns a
        function that waits for it."""
        cli = LITELLM_VENV / "bin" / "litellm"
        if not (LITELLM_VENV / ".installed").exists() or not cli.exists():
            self.not_measured(
                "LiteLLM Proxy", "not installed: `make bench-peers` failed (see its output); the other targets ran"
            )
            return None
        conf = litellm_peer.config(self.tmp, self.instant_base, self.stream_base)
        port = free_port()
        # LITELLM_LOG=ERROR also silences uvicorn's access log, as --no-access-log does for the others;
        # the local cost map spares a download attempt at start.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
        env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"})
        argv = [str(cli), "--config", str(conf), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
        proc = self.sup.start(
            "litellm", argv, env=env, env_note="LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR", server=True
        )
        url = f"http://127.0.0.1:{port}/v1/chat/completions"

        def ready() -> Target:
            wait_for_port(port, proc, timeout=180)
            return Target("litellm", url, url, litellm_peer.MASTER_KEY, proc)

        return ready

    def start_floor(self) -> Target:
        # One floor process per upstream: the floor has no routing.
        procs_: list[Proc] = []
        ports = []
        for name, upstream_port, trust in (
            ("floor", self.nginx_port, False),
            ("floor-sse", self.sse_port, False),
            ("floor-trust-env", self.nginx_port, True),
        ):
            port = free_port()
            env = {**os.environ, "FLOOR_UPSTREAM": f"http://127.0.0.1:{upstream_port}"}
            note = f"FLOOR_UPSTREAM=http://127.0.0.1:{upstream_port}"
            if trust:
                env["FLOOR_TRUST_ENV"] = "1"
                note += " FLOOR_TRUST_ENV=1"
            procs_.append(
                self.sup.start(
                    name, self.uvicorn("bench.floor:app", port), cwd=ROOT, server=True, env=env, env_note=note
                )
            )
            ports.append(port)
        for proc, port in zip(procs_, ports, strict=True):
            wait_for_port(port, proc)
        self.floor_trust_env = Target(
            "floor_trust_env", f"http://127.0.0.1:{ports[2]}/v1/chat/completions", "", "", procs_[2]
        )
        return Target(
            "floor",
            f"http://127.0.0.1:{ports[0]}/v1/chat/completions",
            f"http://127.0.0.1:{ports[1]}/v1/chat/completions",
            "",
            procs_[0],
            stream_proc=procs_[1],
            slow=True,
        )

    def start_oneproxy(self, name: str, env: dict, env_note: str) -> Target:
        """Bootstrap a fresh database, seed it, start one uvicorn process."""
        python = str(VENV / "bin" / "python")
        self.sup.run(f"{name}-bootstrap", [python, "manage.py", "bootstrap"], env=env, env_note=env_note, cwd=ROOT)
        seed = [python, "bench/oneproxy_setup.py", "--instant", self.instant_base, "--stream", self.stream_base]
        seeded = self.sup.run(f"{name}-setup", seed, env=env, env_note=env_note, cwd=ROOT)
        key = json.loads(seeded.stdout.decode().strip().splitlines()[-1])["key"]
        port = free_port()
        proc = self.sup.start(
            name, self.uvicorn("oneproxy.asgi:application", port), env=env, env_note=env_note, cwd=ROOT, server=True
        )
        wait_for_port(port, proc, timeout=90)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        return Target(name, url, url, key, proc, slow=True)

    def start_embedded(self) -> Target:
        data_dir = self.tmp / "embedded"
        env = self.project_env(ONEPROXY_DATA_DIR=str(data_dir), ONEPROXY_ADMIN_PASSWORD=secrets.token_urlsafe(12))
        return self.start_oneproxy("embedded", env, f"ONEPROXY_DATA_DIR={data_dir}")

    def start_service(self) -> Target | None:
        if not self.services_up():
            return None
        db = f"oneproxy_bench_{os.getpid()}"
        psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc"]
        flush = ["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"]
        self.sup.run("service-createdb", [*psql, f"CREATE DATABASE {db}"])
        self.cleanups.append(
            (
                "drop the bench database",
                lambda: self.sup.run("service-dropdb", [*psql, f"DROP DATABASE {db} WITH (FORCE)"]),
            )
        )
        self.sup.run("service-flush", flush)
        self.cleanups.append(("flush the bench Redis db", lambda: self.sup.run("service-flush", flush)))
        data_dir = self.tmp / "service"
        env = self.project_env(
            ONEPROXY_DATA_DIR=str(data_dir),
            DATABASE_URL=f"{PG_URL}/{db}",
            REDIS_URL=REDIS_URL,
            ONEPROXY_ADMIN_PASSWORD=secrets.token_urlsafe(12),
        )
        note = f"ONEPROXY_DATA_DIR={data_dir} DATABASE_URL={PG_URL}/{db} REDIS_URL={REDIS_URL}"
        return self.start_oneproxy("service", env, note)

    def services_up(self) -> bool:
        """PostgreSQL and Redis normally run already; start them if not (and
        stop them again at the end)."""

        def pg_ready() -> bool:
            return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0

        def redis_ready() -> bool:
            return subprocess.run(["redis-cli", "ping"], capture_output=True).returncode == 0

        if not pg_ready():
            cluster = sorted(os.listdir("/etc/postgresql"))[-1]
            ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main"]
            self.sup.run("postgres-start", [*ctl, "start"])
            self.cleanups.append(("stop PostgreSQL", lambda: self.sup.run("postgres-stop", [*ctl, "stop"])))
        if not redis_ready():
            argv = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", ""]
            self.sup.run("redis-start", [*argv, "--appendonly", "no"])
            stop = ["redis-cli", "shutdown", "nosave"]
            self.cleanups.append(("stop Redis", lambda: self.sup.run("redis-stop", stop)))
        for _ in range(50):
            if pg_ready() and redis_ready():
                return True
            time.sleep(0.2)
        self.not_measured("oneproxy service mode", "PostgreSQL or Redis did not come up on 127.0.0.1")
        return False

    def start_targets(self) -> list[Target]:
        direct = Target(
            "direct",
            f"{self.instant_base}/chat/completions",
            f"{self.stream_base}/chat/completions",
            "",
            self.nginx,  # CPU per request of "direct" is nginx's
            on_server_core=False,
        )
        targets = [direct]
        litellm_ready = None
        try:
            litellm_ready = self.start_litellm()
        except Exception as exc:  # noqa: BLE001 - one target failing must not stop the others
            self.not_measured("LiteLLM Proxy", f"did not start: {exc}")
        for label, start in (
            ("floor", self.start_floor),
            ("oneproxy embedded", self.start_embedded),
            ("oneproxy service", self.start_service),
            ("LiteLLM Proxy", litellm_ready),
        ):
            if start is None:
                continue
            try:
                target = start()
            except Interrupted:
                raise
            except Exception as exc:  # noqa: BLE001
                self.not_measured(label, f"did not start: {exc}")
                continue
            if target is not None:
                targets.append(target)
        self.results["urls"] = {t.name: t.url for t in targets}
        self.results["urls"]["stream upstream"] = f"{self.stream_base}/chat/completions"
        # Idle RSS: every process is up and none has served a request yet.
        for t in targets:
            if t.proc is not None:
                self.res(t.name)["rss_idle"] = rss_bytes(t.proc.pid)
        return targets

    # --- scenarios ------------------------------------------------------------

    def throughput(self, targets: list[Target]) -> None:
        """(a) wrk at each concurrency, round-robin over the targets, ROUNDS
        times; the better round of each (target, concurrency) is reported."""
        print("[all] warm-up", flush=True)
        for t in list(targets):
            try:
                wrk(self.sup, t.url, 16, 2, key=t.key)  # connection pools, caches, lazy imports
                if t.proc is not None and t.on_server_core:
                    wait_idle(t.proc.pid)
            except Exception as exc:  # noqa: BLE001
                self.not_measured(f"{t.name} throughput", f"wrk failed: {exc}")
                targets.remove(t)
        rounds: dict[tuple[str, int], list[dict]] = {}
        for round_ in range(ROUNDS):
            for c in CONCURRENCY:
                for t in targets:
                    try:
                        r = wrk(
                            self.sup,
                            t.url,
                            c,
                            seconds_for(c),
                            key=t.key,
                            pid=t.proc.pid if t.proc else None,
                            pid_on_server_core=t.on_server_core,
                        )
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        self.not_measured(f"{t.name} at {c} connections, round {round_ + 1}", f"wrk failed: {exc}")
                        continue
                    rounds.setdefault((t.name, c), []).append(asdict(r))
                    if t.proc is not None and t.on_server_core:
                        wait_idle(t.proc.pid)
                    print(
                        f"  round {round_ + 1} {t.name:<9} c={c:<4} {r.rps:9.0f} req/s  p50 {r.p50_ms:8.2f} ms"
                        f"  p99 {r.p99_ms:8.2f} ms  errors {r.errors}  cpu/req {r.cpu_ms_per_request or 0:.3f} ms"
                        f"  others on core {r.others_on_server_core or 0:.0%}",
                        flush=True,
                    )
                if c == 64 and getattr(self, "floor_trust_env", None) is not None:
                    # Diagnostic beside the floor: only aiohttp's trust_env differs.
                    d = self.floor_trust_env
                    try:
                        r = wrk(self.sup, d.url, c, SECONDS, pid=d.proc.pid if d.proc else None)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        self.not_measured("floor with trust_env=True", f"wrk failed: {exc}")
                        continue
                    rounds.setdefault((d.name, c), []).append(asdict(r))
                    if d.proc is not None:
                        wait_idle(d.proc.pid)
                    print(f"  round {round_ + 1} floor, trust_env=True c=64 {r.rps:9.0f} req/s", flush=True)
        for (name, _c), runs in rounds.items():
            best = max(runs, key=lambda r: r["rps"])
            self.res(name).setdefault("wrk", []).append({**best, "rounds_rps": [r["rps"] for r in runs]})
        for t in targets:
            if t.proc is not None:
                self.res(t.name)["rss_after_load"] = rss_bytes(t.proc.pid)

    def formats(self, targets: list[Target]) -> None:
        """(b) The converted paths and larger prompts beside pass-through, at
        FORMAT_CONNECTIONS, round-robin like (a); the floor runs the
        pass-through rows (it forwards any body to the same nginx)."""
        rounds: dict[tuple[str, str], list[dict]] = {}
        for round_ in range(ROUNDS):
            for scenario, path, fmt, model, size in FORMAT_SCENARIOS:
                for t in targets:
                    if t.name == "floor" and not scenario.startswith("pass-through"):
                        continue
                    url = t.url.rsplit("/v1/", 1)[0] + path
                    try:
                        r = wrk(
                            self.sup,
                            url,
                            FORMAT_CONNECTIONS,
                            SECONDS,
                            key=t.key,
                            model=model,
                            pid=t.proc.pid if t.proc else None,
                            fmt=fmt,
                            prompt_bytes=size,
                        )
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        self.not_measured(f"{t.name} {scenario}, round {round_ + 1}", f"wrk failed: {exc}")
                        continue
                    rounds.setdefault((t.name, scenario), []).append(asdict(r))
                    if t.proc is not None:
                        wait_idle(t.proc.pid)
                    print(
                        f"  round {round_ + 1} {t.name:<9} {scenario:<36} {r.rps:9.0f} req/s  p99 {r.p99_ms:7.2f} ms"
                        f"  errors {r.errors}  cpu/req {r.cpu_ms_per_request or 0:.3f} ms",
                        flush=True,
                    )
        for (name, scenario), runs in rounds.items():
            best = max(runs, key=lambda r: r["rps"])
            entry = {"scenario": scenario, **best, "rounds_rps": [r["rps"] for r in runs]}
            self.res(name).setdefault("formats", []).append(entry)

    def latency(self, t: Target) -> None:
        print(f"[{t.name}] latency at {LATENCY_RATE:g} req/s, 1 connection, interleaved with direct", flush=True)
        pair = asyncio.run(
            clients.fixed_rate(
                {"direct": (f"{self.instant_base}/chat/completions", ""), t.name: (t.url, t.key)},
                rate=LATENCY_RATE,
                max_requests=LATENCY_REQUESTS,
                max_seconds=12,
            )
        )
        self.res(t.name)["latency"], self.res(t.name)["latency_direct"] = pair[t.name], pair["direct"]
        r, d = pair[t.name], pair["direct"]
        print(
            f"  p50 {r['p50_ms']:.3f} ms (direct {d['p50_ms']:.3f})"
            f"  p99 {r['p99_ms']:.3f} ms (direct {d['p99_ms']:.3f})",
            flush=True,
        )

    def streams(self, t: Target) -> None:
        print(f"[{t.name}] {STREAMS} paced streams of {STREAM_CHUNKS} chunks, interleaved with direct", flush=True)
        pair = asyncio.run(
            clients.paced_streams(
                {"direct": (f"{self.stream_base}/chat/completions", ""), t.name: (t.stream_url, t.key)},
                streams=STREAMS,
                chunks=STREAM_CHUNKS,
                interval=STREAM_INTERVAL,
            )
        )
        self.res(t.name)["streams"], self.res(t.name)["streams_direct"] = pair[t.name], pair["direct"]
        s, d = pair[t.name], pair["direct"]
        print(
            f"  ttfb p50 {s['ttfb_p50_ms']:.2f} ms (direct {d['ttfb_p50_ms']:.2f})"
            f"  total p50 {s['total_p50_ms']:.1f} ms (direct {d['total_p50_ms']:.1f})"
            f"  late p99 {s['late_p99_ms']:.2f} ms (direct {d['late_p99_ms']:.2f})  coalesced {s['coalesced_events']}",
            flush=True,
        )

    def slow_streams(self, t: Target) -> None:
        holder = t.stream_proc or t.proc
        assert holder is not None
        print(f"[{t.name}] {SLOW_STREAMS} concurrent slow streams ({SLOW_CHUNKS} s each)", flush=True)
        sl = asyncio.run(
            clients.slow_streams(
                t.stream_url,
                t.key,
                streams=SLOW_STREAMS,
                chunks=SLOW_CHUNKS,
                ramp_seconds=2.0,
                rss=lambda: rss_bytes(holder.pid),
            )
        )
        self.res(t.name)["slow"] = sl
        print(
            f"  ok {sl['ok']}/{sl['streams']}  peak open {sl['peak_open']}  "
            f"RSS {sl['rss_before'] / 2**20:.1f} -> {sl['rss_peak'] / 2**20:.1f} MiB "
            f"({sl['kb_per_stream']:.1f} KB/stream)  failures {sl['failure_kinds']}",
            flush=True,
        )

    def profile(self, t: Target) -> None:
        """py-spy on the relay under wrk at 64 connections: collapsed stacks
        (for the hot-spot tables) then a flame graph (docs/bench-profile.svg).
        --gil keeps only samples where a thread holds the GIL: idle threads
        waiting on a queue would otherwise look busy."""
        if not PY_SPY.exists():
            self.not_measured("profile", "py-spy is not installed in .venv-bench")
            return
        assert t.proc is not None
        print(f"[{t.name}] profile with py-spy under 64 connections", flush=True)
        raw = OUT / "profile.txt"
        svg = ROOT / "docs" / "bench-profile.svg"
        taskset = ["taskset", "-c", ",".join(map(str, sorted(procs.LOAD_CPUS)))]
        post = str(ROOT / "bench" / "post.lua")
        load_argv = [*taskset, "wrk", "-t1", "-c64", f"-d{2 * PROFILE_SECONDS + 4}s", "-s", post, t.url]
        self.sup.record(load_argv, env_note="BENCH_KEY=<key>")
        load = subprocess.Popen(
            load_argv, env={**os.environ, "BENCH_KEY": t.key}, stdout=subprocess.DEVNULL, start_new_session=True
        )
        spy = [*taskset, str(PY_SPY), "record", "--pid", str(t.proc.pid), "--duration", str(PROFILE_SECONDS), "--gil"]
        try:
            time.sleep(1)
            self.sup.run("py-spy", [*spy, "--rate", "200", "--threads", "--format", "raw", "-o", str(raw)])
            self.sup.run("py-spy", [*spy, "-o", str(svg)])
            self.results["profile"] = report.hot_spots(raw.read_text())
            self.results["profile_target"] = t.name
        except Exception as exc:  # noqa: BLE001 - the profile is optional; say why it is missing
            self.not_measured("profile", f"py-spy failed: {exc}")
        finally:
            load.terminate()
            load.wait(10)

    def each(self, targets: list[Target], what: str, step: Callable[[Target], None]) -> None:
        for t in targets:
            try:
                step(t)
            except Interrupted:
                raise
            except Exception as exc:  # noqa: BLE001 - one target failing must not stop the others
                self.not_measured(f"{t.name} {what}", f"the run failed: {exc!r}")

    # --- the whole run ------------------------------------------------------------

    def run(self) -> int:
        self.results["machine"] = report.machine()
        # Others may share this machine: its load before and after tells.
        self.results["loadavg_start"] = os.getloadavg()
        try:
            self.start_upstreams()
            targets = self.start_targets()
            relays = [t for t in targets if t.name != "direct"]
            self.throughput(targets)
            print(f"[formats] converted paths and prompt sizes at {FORMAT_CONNECTIONS} connections", flush=True)
            self.formats([t for t in relays if t.name in ("floor", "embedded", "service")])
            self.each(relays, "latency", self.latency)
            self.each(relays, "streams", self.streams)
            self.each([t for t in relays if t.slow], "slow streams", self.slow_streams)
            self.each([t for t in relays if t.name == "embedded"], "profile", self.profile)
        except Interrupted as exc:
            print(f"\ninterrupted ({exc}); stopping everything", flush=True)
            return 130
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            self.sup.stop_all()
            for what, fn in self.cleanups:
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001
                    print(f"  could not {what}: {exc}")
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.results["loadavg_end"] = os.getloadavg()
        self.results["relay_trust_env"] = relay_trust_env()
        self.results["versions"] = report.versions(VENV, LITELLM_VENV)
        self.results["commands"] = self.sup.commands
        self.results["settings"] = {
            "wrk_seconds": SECONDS,
            "rounds": ROUNDS,
            "concurrency": CONCURRENCY,
            "latency_rate": LATENCY_RATE,
            "latency_requests": LATENCY_REQUESTS,
            "streams": STREAMS,
            "stream_chunks": STREAM_CHUNKS,
            "stream_interval": STREAM_INTERVAL,
            "slow_streams": SLOW_STREAMS,
            "slow_chunks": SLOW_CHUNKS,
            "profile_seconds": PROFILE_SECONDS,
            "format_connections": FORMAT_CONNECTIONS,
            "format_scenarios": [s[0] for s in FORMAT_SCENARIOS],
            "server_cpus": sorted(procs.SERVER_CPUS),
            "load_cpus": sorted(procs.LOAD_CPUS),
        }
        self.results["elapsed_seconds"] = time.monotonic() - self.started
        (OUT / "results.json").write_text(json.dumps(self.results, indent=2))
        report.write(self.results, ROOT / "docs")
        print(f"done in {self.results['elapsed_seconds']:.0f} s: docs/BENCHMARKS.md", flush=True)
        return 0


def main() -> int:
    # Thousands of streams need thousands of descriptors in the client and
    # twice as many in the relay; children inherit the raised limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    procs.pin_self_to_load_cpus()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    return Bench().run()


if __name__ == "__main__":
    sys.exit(main())
