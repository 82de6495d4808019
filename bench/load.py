"""Closed-loop load with wrk: N connections, each sending the next request as
soon as the previous answer arrives, for a fixed time."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import CLK_TCK, LOAD_CPUS, SERVER_CPUS, Supervisor, cpu_seconds

LUA = Path(__file__).with_name("post.lua")


@dataclass
class WrkResult:
    connections: int
    seconds: float
    requests: int
    rps: float  # successful (2xx) answers per second
    errors: int  # socket errors + non-2xx answers + timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_ms_per_request: float | None  # of the process under test
    others_on_server_core: float | None  # share of the server core used by processes not under test


def core_busy_seconds(cpus: set[int]) -> float:
    """Busy time of these cores since boot (/proc/stat: all but idle and iowait)."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
            total += user + nice + system + irq + softirq + steal
    return total / CLK_TCK


def wrk(
    sup: Supervisor,
    url: str,
    connections: int,
    seconds: float,
    key: str = "",
    model: str = "bench-instant",
    pid: int | None = None,
    pid_on_server_core: bool = True,
    fmt: str = "openai",
    prompt_bytes: int = 0,
) -> WrkResult:
    """One wrk run; with ``pid``, that process's CPU time over the run is
    divided by the requests completed (``pid_on_server_core``: it runs on the
    server core, so its time there is not counted as someone else's)."""
    threads = 1  # one thread on the load core is enough and leaves the server core alone
    argv = [
        "taskset",
        "-c",
        ",".join(map(str, sorted(LOAD_CPUS))),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    note = f"BENCH_KEY={'<key>' if key else ''} BENCH_MODEL={model}"
    if fmt != "openai" or prompt_bytes:
        note += f" BENCH_FORMAT={fmt} BENCH_PROMPT_BYTES={prompt_bytes}"
    sup.record(argv, env_note=note)
    env = {**os.environ, "BENCH_KEY": key, "BENCH_MODEL": model, "BENCH_FORMAT": fmt}
    env["BENCH_PROMPT_BYTES"] = str(prompt_bytes)
    cpu0 = cpu_seconds(pid) if pid else None
    core0 = core_busy_seconds(SERVER_CPUS)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    core1 = core_busy_seconds(SERVER_CPUS)
    cpu1 = cpu_seconds(pid) if pid else None
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    data = json.loads(line[len("WRK_JSON ") :])
    requests = data["requests"]
    secs = data["duration_us"] / 1e6
    errors = sum(data[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    cpu_ms = None
    others = None
    if cpu0 is not None and cpu1 is not None and requests:
        cpu_ms = (cpu1 - cpu0) * 1000 / requests
    if secs:
        # The process under test runs on the server core only (when it is one
        # of ours); whatever else kept that core busy is outside load.
        own = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None and pid_on_server_core else 0.0
        others = min(1.0, max(0.0, (core1 - core0 - own) / secs / len(SERVER_CPUS)))  # ticks are coarse
    return WrkResult(
        connections=connections,
        seconds=secs,
        requests=requests,
        rps=(requests - data["err_status"]) / secs if secs else 0.0,
        errors=errors,
        p50_ms=data["lat_p50_us"] / 1000,
        p90_ms=data["lat_p90_us"] / 1000,
        p99_ms=data["lat_p99_us"] / 1000,
        cpu_ms_per_request=cpu_ms,
        others_on_server_core=others,
    )


def wait_idle(pid: int, busy_below: float = 0.05, step: float = 0.25, timeout: float = 30) -> float:
    """Wait until the process stops burning CPU: a relay that fell behind
    keeps serving requests wrk has already abandoned (LiteLLM at 256
    connections: seconds of them), which would run on the server core
    during the next target's run. Returns the seconds waited."""
    started = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - started < timeout:
        time.sleep(step)
        now = cpu_seconds(pid)
        if now - last < busy_below * step:
            break
        last = now
    return time.monotonic() - started
