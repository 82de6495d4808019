"""docs/RELIABILITY.md from one run's figures (reliability/run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _table(headers: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}×{v}" for k, v in counts.items())


def _books(books: dict[str, Any]) -> str:
    exact = "exact" if books["exact"] else "NOT exact"
    return (
        f"books {exact} (balance = ledger = top-ups − settled usage, to the µUSD); lowest balance "
        f"{books['min_balance']} µUSD, largest single overdraft {books['max_overdraft']} µUSD, "
        f"written off {books['written_off']} µUSD; {books['rows']} usage rows"
    )


def write(path: Path, machine: dict[str, str], results: dict[str, dict[str, Any]]) -> None:
    lines = [
        "# Reliability",
        "",
        "Written by `make reliability` (reliability/run.py) from one run: hostile inputs on every endpoint,",
        "a misbehaving upstream key beside a healthy one, client errors that echo disable phrases, a relay",
        "killed with `kill -9` mid-load, Redis frozen and killed under load (service mode), and a soak of",
        "several load rounds, in both modes. The fast versions of these scenarios run in `make test`",
        "(tests/faults/).",
        "",
        "## How this was run",
        "",
    ]
    lines += _table(["", ""], [[k, v] for k, v in machine.items()])
    lines += [
        "The machine is shared: other engineers' test suites ran at the same time (load averages above).",
        "The upstream is the test suite's OpenAI emulator (tests/emulators/) in its own process; it, not",
        "the relay, bounds the soak's requests per second. docs/BENCHMARKS.md measures speed.",
        "",
    ]
    for mode, out in results.items():
        lines += [f"## {mode.capitalize()} mode", ""]
        for error in out.get("errors", []):
            lines += [f"**Scenario failed to run:** {error}", ""]
        if "bad_inputs" in out:
            lines += ["### Bad inputs per endpoint", ""]
            rows = [[r["endpoint"], r["tried"], _statuses(r["statuses"]), r["5xx"], r["hangs"], f"{r['shaped_pct']}%"]
                    for r in out["bad_inputs"]["endpoints"]]  # fmt: skip
            total = sum(r["tried"] for r in out["bad_inputs"]["endpoints"])
            lines += _table(["endpoint", "tried", "answers", "5xx", "hangs", "in the error shape"], rows)
            lines += [f"{total} bad inputs in all; {_books(out['books_after_bad_inputs'])}.", ""]
        if "client_caused" in out:
            c = out["client_caused"]
            lines += ["### Key states changed by client-caused errors", "",
                      f"{c['requests']} requests whose upstream 400 echoes disable phrases "
                      f"(\"Unrecognized request argument supplied: billing\", with \"insufficient quota; invalid "
                      f"api key\" in the field), on both keys: answers {_statuses(c['statuses'])}; "
                      f"**{c['key_state_changes']} key-state changes**; key states after: "
                      f"{', '.join(c['key_states'])}.", ""]  # fmt: skip
        if "faults" in out:
            f = out["faults"]
            lines += ["### Upstream faults injected", ""]
            rows = [[r["fault"], r["when"], r["requests"], r["injected"], r["failed_with_healthy_key"],
                     r.get("ended_cleanly", "—")] for r in f["faults"]]  # fmt: skip
            failed = sum(r["failed_with_healthy_key"] for r in f["faults"])
            lines += _table(["fault", "when", "requests", "faults injected", "failed while a healthy key existed",
                             "streams ended cleanly"], rows)  # fmt: skip
            lines += [f"**{failed} requests failed while a healthy key existed.** After: {_books(f['books'])}.",
                      "A fault cools or disables the faulty key (by the key-state rules), so the pool stops",
                      "sending it requests: \"faults injected\" counts the requests the faulty key received.",
                      "Faults after the first byte cannot be retried; they ran with the healthy key disabled,",
                      "and count the streams that ended with an error event or `[DONE]`, billed.", ""]  # fmt: skip
        if "kill9" in out:
            k = out["kill9"]
            lines += ["### A relay killed with `kill -9` mid-load", "",
                      f"{k['in_flight']} streams in flight, {k['sent_upstream']} of them already sent upstream, "
                      f"when the relay was killed. After `billing.settle_usage` and `billing.reconcile`: "
                      f"**{k['charged_at_estimate']} charged at the hold's estimate** (${k['charged_usd']}), "
                      f"**{k['released']} released** (never sent), **{k['lost']} lost**. {_books(k['books'])}.",
                      ""]  # fmt: skip
        if "redis" in out:
            r = out["redis"]
            lines += ["### Redis frozen (SIGSTOP) and killed under load", ""]
            rows = [[p["phase"], _statuses(p["statuses"]), p["longest_s"]] for p in r["phases"]]
            lines += _table(["phase (4 s each, 16 clients)", "answers by status and code", "longest request (s)"], rows)
            lines += ["A request counts in the phase in which it started: those started just before the freeze",
                      "end in it; right after the thaw a few meet connections the outage broke.", ""]  # fmt: skip
            lines += [f"Relay log: {r['outage_log_lines']} outage line(s) (\"Redis is not answering\"), "
                      f"{r['tracebacks']} tracebacks. 503s carry code `store_unavailable`. With Redis gone, "
                      f"the database's {_books(out['books_after_redis'])}.", ""]  # fmt: skip
        if "soak" in out:
            s = out["soak"]
            names = list(s["rounds"][0]["rss_kib"])
            lines += ["### Soak", "", f"Rounds of {s['seconds']} s of closed-loop load (wrk, 64 connections), "
                      "RSS of every process after each round (MiB):", ""]  # fmt: skip
            rows = [[r["round"], r["requests"], r["total"], r["errors"],
                     *(f"{r['rss_kib'].get(n, 0) / 1024:.1f}" for n in names)] for r in s["rounds"]]  # fmt: skip
            lines += _table(["round", "requests", "total", "errors", *names], rows)
            warm = s["rounds"][1:]
            for n in names:
                values = [r["rss_kib"].get(n, 0) / 1024 for r in warm]
                lines.append(
                    f"- {n}: {max(values) - min(values):.1f} MiB between the warm rounds (2–{len(s['rounds'])})"
                )
            lines += ["", f"After the soak: {_books(out['books_after_soak'])}.", ""]
    path.write_text("\n".join(lines).rstrip() + "\n")
