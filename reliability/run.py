"""`make reliability`: one run of every scenario in both modes, written to
docs/RELIABILITY.md (under 10 minutes on the 2-core machine)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reliability import scenarios
from reliability.report import write
from reliability.soak import soak
from reliability.stack import ROOT, Stack

ROUNDS = int(os.environ.get("RELIABILITY_ROUNDS", "5"))
ROUND_SECONDS = int(os.environ.get("RELIABILITY_ROUND_SECONDS", "12"))


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "relay", "billing", "channels_app", "oneproxy"],
                           cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    return {
        "command": "make reliability",
        "commit": commit.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
        "cpu": f"{os.cpu_count()} × {cpu}",
        "memory": f"{int(Path('/proc/meminfo').read_text().split()[1]) // 1024 // 1024} GiB",
        "python": platform.python_version(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def run_mode(mode: str, base: Path, results: dict[str, dict[str, object]]) -> None:
    stack = Stack(mode, base / mode).start()
    out: dict[str, object] = {}
    results[mode] = out

    def step(name: str, scenario: Callable[[], object]) -> None:
        print(f"  {mode}: {name}", flush=True)
        try:
            out[name] = scenario()
        except Exception as exc:  # noqa: BLE001 - the report says which scenario broke, and how
            out.setdefault("errors", []).append(f"{name}: {type(exc).__name__}: {exc}")  # type: ignore[union-attr]

    try:
        url = stack.start_relay()
        step("bad_inputs", lambda: scenarios.bad_inputs(stack, url))
        step("books_after_bad_inputs", lambda: json.loads(stack.manage("reliability.books")))
        step("client_caused", lambda: scenarios.client_caused(stack, url))
        step("faults", lambda: scenarios.upstream_faults(stack, url))
        step("kill9", lambda: scenarios.kill9(stack, url))
        step("soak", lambda: soak(stack, ROUNDS, ROUND_SECONDS))
        step("books_after_soak", lambda: json.loads(stack.manage("reliability.books", "settle")))
        if mode == "service":
            port = stack.relays[-1][1]
            step("redis", lambda: scenarios.redis_outage(stack, f"http://127.0.0.1:{port}"))
            # Redis is dead now: the database's books, as they stand.
            step("books_after_redis", lambda: json.loads(stack.manage("reliability.books")))
    finally:
        stack.stop()


def main() -> None:
    started = time.monotonic()
    facts = machine()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="oneproxy-reliability-") as tmp:
        for mode in ("embedded", "service"):
            print(f"reliability: {mode} mode …", flush=True)
            run_mode(mode, Path(tmp), results)
    facts["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts["duration"] = f"{(time.monotonic() - started) / 60:.1f} min"
    (ROOT / "docs" / "reliability.json").write_text(json.dumps({"machine": facts, "results": results}, indent=1))
    write(ROOT / "docs" / "RELIABILITY.md", facts, results)
    print(f"reliability: docs/RELIABILITY.md written in {facts['duration']}")


if __name__ == "__main__":
    main()
