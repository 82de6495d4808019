"""Facts a benchmark run records: the machine, the software versions, and the
profiler's hot spots."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections import Counter
from pathlib import Path

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
