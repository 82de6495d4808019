"""Service mode: key-state changes shared between relay processes at once.

A transition is published on a Redis channel (every process applies it to
its overlay before its next request) and kept in a hash, so a process that
starts later learns what happened before it subscribed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import orjson

from relay.keypool import KeyPool
from relay.keystate import Transition
from relay.ledger import REDIS_DOWN
from relay.outage import Outage
from relay.redis_names import RedisNames

log = logging.getLogger("oneproxy.relay.keybus")


async def publish(redis, names: RedisNames, transition: Transition) -> None:  # type: ignore[no-untyped-def]
    payload = orjson.dumps(dataclasses.asdict(transition))
    pipe = redis.pipeline(transaction=False)
    pipe.hset(names.key_states, str(transition.key_id), payload)
    pipe.publish(names.key_channel, payload)
    try:
        await pipe.execute()
    except Exception as exc:  # noqa: BLE001 - the database has the transition; peers learn it on reload
        log.warning("publishing key %s -> %s failed: %s", transition.key_id, transition.state, exc)


async def listen(redis, names: RedisNames, pool: KeyPool, outage: Outage, ready: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(names.key_channel)
            # Subscribed first, then the backlog: nothing falls between the two.
            for raw in (await redis.hgetall(names.key_states)).values():
                pool.apply(Transition(**orjson.loads(raw)))
            ready.set()
            outage.ok()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    pool.apply(Transition(**orjson.loads(message["data"])))
        except asyncio.CancelledError:
            await pubsub.aclose()
            raise
        except REDIS_DOWN as exc:
            outage.failed(exc)  # logged once per outage
        except Exception:
            log.exception("key-state subscription broke; resubscribing")
        try:
            await pubsub.aclose()
        except REDIS_DOWN:
            pass
        await asyncio.sleep(1)
