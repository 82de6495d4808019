"""Service mode: move usage events from the Redis stream into the database.

Every relay process runs one consumer in the shared consumer group, so the
stream drains while any process is alive; ``billing.settle_usage`` claims
entries a dead process left pending. Writing is idempotent (request ids are
unique), so a redelivered event is never charged twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from relay.db import SETTLE_EVERY, DbWorker
from relay.fast_redis import RespClient, RespError
from relay.ledger import REDIS_DOWN, event_from_entry
from relay.outage import Outage
from relay.redis_names import USAGE_GROUP, RedisNames

log = logging.getLogger("oneproxy.relay.usage")
BATCH = 500


async def ensure_group(redis: RespClient, stream: str) -> None:
    try:
        await redis.execute("XGROUP", "CREATE", stream, USAGE_GROUP, "0", "MKSTREAM")
    except RespError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def consume_usage(redis: RespClient, names: RedisNames, db: DbWorker, outage: Outage | None = None) -> None:
    """On the relay's own Redis client (relay/fast_redis.py), not redis-py: a
    redis-py pipeline could return normally to a task being cancelled, and
    this loop then never ended (a hung shutdown; seen in a test)."""
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    stream = names.usage_stream
    await ensure_group(redis, stream)
    backlog = True  # first re-read what this consumer name left pending
    while True:
        try:
            reply = await redis.execute(
                "XREADGROUP", "GROUP", USAGE_GROUP, consumer, "COUNT", BATCH,
                "STREAMS", stream, "0" if backlog else ">",
            )  # fmt: skip
            entries = reply[0][1] if reply else []
            if outage is not None:
                outage.ok()
            if backlog and not entries:
                backlog = False
                continue
            if entries:
                ids = [entry_id for entry_id, _ in entries]
                # A pending entry deleted meanwhile comes back without fields: only acknowledged.
                events = [event_from_entry(fields) for _, fields in entries if fields]
                if events:
                    await db.run(db.backend.apply_usage, events)
                await asyncio.gather(
                    redis.execute("XACK", stream, USAGE_GROUP, *ids), redis.execute("XDEL", stream, *ids)
                )
            if len(entries) < BATCH:
                # Caught up: let the next batch gather (as embedded mode does)
                # rather than paying a read, a transaction and an ack per event,
                # then read it in a gap between requests. The read does not
                # block: a blocked read would wake on the XADD of a request
                # still in flight. (Wait before the read, never between read
                # and write: entries read are this consumer's until
                # acknowledged, and a process killed in between leaves them
                # to billing.settle_usage.) With a backlog, no waiting.
                await asyncio.sleep(SETTLE_EVERY)
                await db.quiet.wait()
        except asyncio.CancelledError:
            raise
        except REDIS_DOWN as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted (e.g. Redis flushed)
                await ensure_group(redis, stream)
                continue
            if outage is not None:
                outage.failed(exc)  # one line per outage, not one a second
            else:
                log.warning("reading the usage stream failed: %s; retrying", exc)
            await asyncio.sleep(1)
        except Exception as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted (e.g. Redis flushed)
                await ensure_group(redis, stream)
                continue
            log.exception("settling usage from the stream failed; retrying")
            await asyncio.sleep(1)
