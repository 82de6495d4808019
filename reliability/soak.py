"""Soak: rounds of closed-loop load (wrk, 64 connections) on one relay, and
the RSS of every process of the stack after each round."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from reliability.stack import Stack, rss_kib

LUA = Path(__file__).resolve().parent.parent / "bench" / "post.lua"


def wrk(url: str, key: str, seconds: int, connections: int = 64) -> dict[str, float]:
    env = {**os.environ, "BENCH_KEY": key, "BENCH_MODEL": "gpt-4o-mini"}
    done = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s", str(LUA),
         f"{url}/v1/chat/completions"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    facts = json.loads(line[len("WRK_JSON ") :])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    facts["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return facts


def soak(stack: Stack, rounds: int, seconds: int) -> dict[str, object]:
    url = stack.start_relay()
    wrk(url, stack.key, 5)  # warm-up
    table = []
    total = 0
    for i in range(1, rounds + 1):
        facts = wrk(url, stack.key, seconds)
        total += int(facts["requests"])
        table.append(
            {
                "round": i,
                "requests": int(facts["requests"]),
                "total": total,
                "errors": int(facts["non2xx"] + facts["err_connect"] + facts["err_read"] + facts["err_timeout"]),
                "rss_kib": {name: rss_kib(pid) for name, pid in stack.processes().items()},
            }
        )
    return {"rounds": table, "seconds": seconds}
