"""Service mode, seen from billing: the relay's Redis balance mirror and usage stream.

The relay (relay/ledger.py) keeps a balance mirror per user = database
balance − holds in flight − costs still queued on the usage stream, and a
used mirror likewise for capped tokens (names in relay/redis_names.py,
under ONEPROXY_REDIS_PREFIX). A missing mirror is re-seeded from the
database by the next hold, so dropping one is always allowed when nothing
for that user is in flight or queued. Everything here is synchronous
(Celery workers, admin, API).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from functools import cache

import orjson
import redis
from django.conf import settings

from relay.ledger import CREDIT, RELEASE_STALE, event_from_entry
from relay.ports import UsageEvent
from relay.redis_names import USAGE_GROUP, RedisNames

log = logging.getLogger("oneproxy.billing.mirror")

# Drop a user's mirrors only if the balance mirror still holds the value the
# caller saw: anything the relay did since (hold, settle, credit) changed it.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', unpack(KEYS))
return 1
"""


def names() -> RedisNames:
    """The relay's Redis names, from the same setting the relay reads."""
    return RedisNames(settings.ONEPROXY_REDIS_PREFIX)


@cache
def client(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(url or settings.REDIS_URL)


def credit(user_id: int, amount: int) -> None:
    """Move the user's balance mirror by ``amount`` µUSD, if it exists (the
    relay seeds a missing one from the database, which already has it)."""
    client().eval(CREDIT, 1, names().balance(user_id), amount)


def balances() -> dict[int, int]:
    """Every balance mirror: user id → µUSD."""
    prefix = names().balance_prefix
    keys = [key for key in client().scan_iter(match=f"{prefix}*", count=1000)]
    found: dict[int, int] = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        for key, value in zip(chunk, client().mget(chunk), strict=True):
            if value is not None:
                found[int(key.decode()[len(prefix) :])] = int(value)
    return found


def queued_user_ids() -> set[int]:
    """Users with usage events still on the stream: not yet read, or read and
    not yet written (entries are deleted once written)."""
    users: set[int] = set()
    start = "-"
    while True:
        entries = client().xrange(names().usage_stream, min=start, max="+", count=1000)
        for _, fields in entries:
            raw = fields.get(b"e")
            if raw is not None:
                users.add(int(orjson.loads(raw)["user_id"]))
        if len(entries) < 1000:
            return users
        start = "(" + entries[-1][0].decode()


def release(user_id: int, seen_balance: int, token_ids: list[int]) -> bool:
    """Drop the user's balance mirror and their tokens' used mirrors, only if
    the balance mirror still reads ``seen_balance``; True if dropped."""
    keys = [names().balance(user_id), *(names().used(t) for t in token_ids)]
    return bool(client().eval(_RELEASE, len(keys), *keys, str(seen_balance)))


def ensure_group() -> None:
    try:
        client().xgroup_create(names().usage_stream, USAGE_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def consumer_name() -> str:
    return f"billing-{socket.gethostname()}-{os.getpid()}"


def stranded_batches(min_idle_ms: int, count: int = 500) -> Iterator[list[tuple[bytes, UsageEvent | None]]]:
    """Batches of stream entries nobody is settling: entries read by a
    consumer and left unacknowledged for ``min_idle_ms`` (XAUTOCLAIM), then
    entries no consumer has read although the oldest is ``min_idle_ms`` old
    (no relay process is alive to read them). The caller writes each batch
    and calls ``done`` with its ids; an entry whose payload is unreadable
    comes as ``(id, None)``."""
    ensure_group()
    me = consumer_name()
    cursor = "0-0"
    while True:
        reply = client().xautoclaim(
            names().usage_stream, USAGE_GROUP, me, min_idle_time=min_idle_ms, start_id=cursor, count=count
        )
        cursor, entries = reply[0], reply[1]
        batch = _decode(entries)
        if batch:
            yield batch
        if cursor in (b"0-0", "0-0"):
            break
    while _oldest_unread_age_ms() >= min_idle_ms:
        reply = client().xreadgroup(USAGE_GROUP, me, {names().usage_stream: ">"}, count=count)
        entries = reply[0][1] if reply else []
        if not entries:
            return
        yield _decode(entries)


def done(entry_ids: list[bytes]) -> None:
    """Acknowledge written entries and delete them from the stream."""
    if entry_ids:
        client().xack(names().usage_stream, USAGE_GROUP, *entry_ids)
        client().xdel(names().usage_stream, *entry_ids)


def _decode(entries: list) -> list[tuple[bytes, UsageEvent | None]]:
    batch: list[tuple[bytes, UsageEvent | None]] = []
    for entry_id, fields in entries:
        if entry_id is None:  # deleted from the stream while pending
            continue
        raw = (fields or {}).get(b"e")
        try:
            flat = [part for pair in (fields or {}).items() for part in pair]
            batch.append((entry_id, event_from_entry(flat)))
        except (ValueError, TypeError, KeyError):
            # Never writable; the payload is kept here, in the log.
            log.error("usage stream entry %s is unreadable and is dropped: %r", entry_id, raw)
            batch.append((entry_id, None))
    return batch


def _oldest_unread_age_ms() -> int:
    """Age of the oldest entry no consumer of the group has read; -1 if none."""
    groups = {g["name"]: g for g in client().xinfo_groups(names().usage_stream)}
    group = groups.get(USAGE_GROUP.encode()) or groups.get(USAGE_GROUP)
    if group is None:
        return -1
    last = group["last-delivered-id"]
    last = last.decode() if isinstance(last, bytes) else last
    unread = client().xrange(names().usage_stream, min="(" + last, max="+", count=1)
    if not unread:
        return -1
    millis = int(unread[0][0].decode().split("-")[0])
    now_s, now_us = client().time()
    return now_s * 1000 + now_us // 1000 - millis


def release_stale_holds(older_than_seconds: float, now: float) -> int:
    """Settle the holds taken more than ``older_than_seconds`` ago and never
    settled (their relay process died): charged at the estimate if the
    request had been sent upstream, given back if not; returns how many. Exact: each
    hold is one registry entry, removed and given back atomically, and a
    request that does settle later is then charged without a second release."""
    n = names()
    released = charged = 0
    stale = client().zrangebyscore(n.holds, "-inf", now - older_than_seconds)
    for member in stale:
        outcome = int(client().eval(RELEASE_STALE, 3, n.holds, n.sent, n.usage_stream, member))
        released += outcome == 1
        charged += outcome == 2
    if charged:
        log.warning("charged %d stale hold(s) at their estimate: their requests had gone upstream", charged)
    return released + charged
