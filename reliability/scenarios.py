"""The scenarios of `make reliability`, each against a running stack
(reliability/stack.py), each returning the figures docs/RELIABILITY.md shows."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import requests

from reliability.stack import Stack
from tests.faults.corpus import AFTER_FIRST_BYTE, BAD_BODIES, BEFORE_FIRST_BYTE, JSON_ENDPOINTS, UPLOADS

CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
HANG = 10.0  # an answer slower than this is a hang
API_PATHS = ["/api/usage/?user=" + "9" * 30, "/api/usage/?offset=" + "9" * 30, "/api/users/" + "9" * 30 + "/",
             "/api/ledger/?token=x", "/api/no-such-thing/", "/api/usage/?since=yesterday"]  # fmt: skip


def _shaped(answer: requests.Response) -> bool:
    """In the documented error shape: JSON {"error": {message, type, code}}, the request id quoted on the relay."""
    try:
        error = answer.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if not {"message", "type", "code"} <= set(error):
        return False
    rid = answer.headers.get("X-Request-Id")
    return rid is None or rid in str(error["message"])


def bad_inputs(stack: Stack, url: str) -> dict[str, Any]:
    """Every corpus body on every endpoint, junk on the management API, and
    raw-socket abuse: answers by status, 5xx, hangs, share in the shape."""
    rows = []
    headers = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    for endpoint in JSON_ENDPOINTS + UPLOADS:
        sent = dict(headers)
        if endpoint in UPLOADS:
            sent["Content-Type"] = "multipart/form-data; boundary=xyz"
        rows.append(_try_all(endpoint, [(f"{url}/v1/{endpoint}", body, sent) for body in BAD_BODIES]))
    api_headers = {"Authorization": "Bearer op-not-a-token"}
    rows.append(_try_all("/api/ (junk ids, bad token)", [(f"{url}{p}", None, api_headers) for p in API_PATHS]))
    rows.append(_raw_abuse(stack, url))
    return {"endpoints": rows}


def _try_all(name: str, attempts: list[tuple[str, bytes | None, dict[str, str]]]) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    shaped = hangs = server_errors = 0
    for target, body, headers in attempts:
        started = time.monotonic()
        try:
            if body is None:
                answer = requests.get(target, headers=headers, timeout=HANG)
            else:
                answer = requests.post(target, data=body, headers=headers, timeout=HANG)
        except requests.Timeout:
            hangs += 1
            statuses["hang"] += 1
            continue
        if time.monotonic() - started > HANG:
            hangs += 1
        statuses[str(answer.status_code)] += 1
        server_errors += answer.status_code >= 500
        shaped += answer.status_code < 400 or _shaped(answer)
    return {
        "endpoint": name,
        "tried": len(attempts),
        "statuses": dict(sorted(statuses.items())),
        "5xx": server_errors,
        "hangs": hangs,
        "shaped_pct": round(100 * shaped / max(len(attempts), 1), 1),
    }


def _raw(url: str, data: bytes, timeout: float = HANG) -> bytes:
    where = urlparse(url)
    with socket.create_connection((where.hostname or "127.0.0.1", where.port or 80), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            return out + b"<hang>"
        return out


def _raw_abuse(stack: Stack, url: str) -> dict[str, Any]:
    """Lying Content-Length both ways, stalled bodies, oversized headers,
    disconnects mid-body: the status line of each answer."""
    body = json.dumps(CHAT).encode()

    def head(length: int, extra: str = "") -> bytes:
        return (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stack.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}Connection: close\r\n\r\n"
        ).encode()

    cases = [
        head(len(body) + 50) + body,  # promises more: stalls, 408
        head(len(body) - 5) + body,  # promises less: cut JSON, 400
        head(10_000),  # headers only: stalls, 408
        head(len(body), extra=f"X-Junk: {'a' * 200_000}\r\n") + body,  # oversized headers
        head(len(body), extra="Transfer-Encoding: chunked\r\n") + b"zz\r\n",  # broken framing
    ]
    statuses: Counter[str] = Counter()
    shaped = hangs = server_errors = 0
    for data in cases:
        answer = _raw(url, data)
        if answer.endswith(b"<hang>") or not answer:
            hangs += answer.endswith(b"<hang>")
            statuses["closed" if not answer else "hang"] += 1
            continue
        status = answer.split(b" ", 2)[1].decode()
        statuses[status] += 1
        server_errors += status.startswith("5")
        payload = answer.split(b"\r\n\r\n", 1)[-1]
        shaped += b'"error"' in payload or status.startswith("2")
    for _ in range(5):  # disconnect mid-body
        where = urlparse(url)
        with socket.create_connection((where.hostname or "127.0.0.1", where.port or 80)) as sock:
            sock.sendall(head(len(body)) + body[:10])
    statuses["disconnected mid-body"] = 5
    return {
        "endpoint": "raw sockets (lying Content-Length, stalls, huge headers, bad framing, disconnects)",
        "tried": len(cases) + 5,
        "statuses": dict(statuses),
        "5xx": server_errors,
        "hangs": hangs,
        "shaped_pct": round(100 * shaped / len(cases), 1),
        "note": "framing errors the ASGI server answers itself (plain text) count as not in the shape",
    }


def _post(url: str, key: str, stream: bool) -> tuple[int, bytes]:
    try:
        answer = requests.post(
            f"{url}/v1/chat/completions", json={**CHAT, "stream": stream},
            headers={"Authorization": f"Bearer {key}"}, timeout=30,
        )  # fmt: skip
    except requests.RequestException:
        return 0, b""
    return answer.status_code, answer.content


def _code(status: int, body: bytes) -> str:
    """ "503 store_unavailable": the status and, for an error, its code."""
    if status < 400:
        return str(status)
    try:
        return f"{status} {json.loads(body)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(status)


def upstream_faults(stack: Stack, url: str, per_kind: int = 8) -> dict[str, Any]:
    """Each fault on the faulty key beside a healthy one. Before the first
    byte every request must still succeed; after it, a stream must end
    cleanly (an error event or [DONE]) and be billed."""
    rows = []
    for fault, options in BEFORE_FIRST_BYTE:
        stack.reset_upstream()
        stack.manage("reliability.books", "reset-keys")
        time.sleep(1.1)  # the relay reloads its snapshot
        stack.behave("sk-upstream-faulty", fault, **options)
        streams = [False] * per_kind if fault in ("reset_mid_body", "stall_after_headers", "quote_key") else [
            i % 2 == 1 for i in range(per_kind)]  # fmt: skip
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda s: _post(url, stack.key, s), streams))
        failed = sum(1 for status, body in results if status != 200 or b"upstream_" in body[-300:])
        hits = int(requests.get(f"{stack.upstream_root}/_control/count", timeout=5).json().get("sk-upstream-faulty", 0))
        rows.append({"fault": f"{fault} {options or ''}".strip(), "when": "before the first byte",
                     "requests": per_kind, "injected": hits, "failed_with_healthy_key": failed})  # fmt: skip
    stack.reset_upstream()
    for fault in AFTER_FIRST_BYTE:
        stack.manage("reliability.books", "disable-good")
        time.sleep(1.2)
        stack.behave("sk-upstream-faulty", fault, seconds=30, size=1 << 20)
        results = [_post(url, stack.key, True) for _ in range(3)]
        clean = sum(
            1 for status, body in results
            if status == 200 and (body.rstrip().endswith(b"data: [DONE]") or b'"error"' in body[-400:])
        )  # fmt: skip
        rows.append({"fault": fault, "when": "after the first byte (stream)", "requests": 3, "injected": 3,
                     "failed_with_healthy_key": 0, "ended_cleanly": clean})  # fmt: skip
        stack.reset_upstream()
    stack.manage("reliability.books", "reset-keys")
    time.sleep(1.2)
    return {"faults": rows, "books": json.loads(stack.manage("reliability.books"))}


def client_caused(stack: Stack, url: str) -> dict[str, Any]:
    """Requests whose 4xx echoes disable phrases, on both keys: no key may change."""
    before = json.loads(stack.manage("reliability.books"))["key_events"]
    for key in ("sk-upstream-faulty", "sk-upstream-good"):
        stack.behave(key, "quote_field", field="billing")
    body = {**CHAT, "billing": "insufficient quota; invalid api key; account deactivated"}
    codes = Counter(
        requests.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {stack.key}"},
                      timeout=10).status_code
        for _ in range(40)
    )  # fmt: skip
    stack.reset_upstream()
    after = json.loads(stack.manage("reliability.books"))
    return {"requests": 40, "statuses": dict(codes), "key_state_changes": after["key_events"] - before,
            "key_states": after["key_states"]}  # fmt: skip


def redis_outage(stack: Stack, url: str) -> dict[str, Any]:
    """Load from 16 clients while Redis answers, is frozen (SIGSTOP), thawed,
    then killed: the longest request and the answers by status, per phase."""
    assert stack.redis is not None
    phases: dict[str, Counter[str]] = {}
    longest: dict[str, float] = {}
    stop = threading.Event()
    phase = {"name": "healthy"}
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            name = phase["name"]
            started = time.monotonic()
            status, body = _post(url, stack.key, False)
            took = time.monotonic() - started
            with lock:
                phases.setdefault(name, Counter())[_code(status, body)] += 1
                longest[name] = max(longest.get(name, 0.0), took)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for t in threads:
        t.start()
    for name, action in [("healthy", None), ("frozen", stack.redis.freeze), ("thawed", stack.redis.thaw),
                         ("killed", stack.redis.kill)]:  # fmt: skip
        if action is not None:
            action()
        phase["name"] = name
        time.sleep(4)
    stop.set()
    for t in threads:
        t.join(40)
    log = stack.logs()
    return {
        "phases": [
            {"phase": n, "statuses": dict(phases.get(n, {})), "longest_s": round(longest.get(n, 0), 2)}
            for n in ("healthy", "frozen", "thawed", "killed")
        ],
        "outage_log_lines": log.count("is not answering"),
        "tracebacks": log.count("Traceback"),
    }


def kill9(stack: Stack, url: str) -> dict[str, Any]:
    """20 slow streams in flight, the relay killed with kill -9, then what
    beat runs (stranded usage, reconcile): charged, released, lost."""
    stack.reset_upstream()
    for key in ("sk-upstream-faulty", "sk-upstream-good"):
        stack.behave(key, "slow", delay=0.1, chunk_delay=0.5)
    before = json.loads(stack.manage("reliability.books"))
    threads = [threading.Thread(target=_post, args=(url, stack.key, True), daemon=True) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    sent = sum(requests.get(f"{stack.upstream_root}/_control/count", timeout=5).json().values())
    stack.kill9_relay(url)
    for t in threads:
        t.join(10)
    after = json.loads(stack.manage("reliability.books", "settle"))
    stack.reset_upstream()
    rows = after["rows"] - before["rows"]
    return {
        "in_flight": 20,
        "sent_upstream": sent,
        "charged_at_estimate": after["lost_charged"] - before["lost_charged"],
        "charged_usd": round(after["lost_charged_usd"] - before["lost_charged_usd"], 6),
        "released": max(20 - sent, 0),
        "lost": max(sent - rows, 0),
        "books": after,
    }
