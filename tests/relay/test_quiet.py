"""Periodic database batches start in a gap between requests (relay/db.py
``Quiet``): a batch holds the GIL, and a request arriving during it waits."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from relay import db as db_module
from relay.db import DbWorker, Quiet
from relay.journal import Journal
from relay.ports import Settled
from tests.billing.events import usage_event


async def test_wait_returns_at_once_when_no_request_is_in_flight() -> None:
    quiet = Quiet()
    started = time.monotonic()
    await quiet.wait(at_most=5)
    assert time.monotonic() - started < 0.1


async def test_wait_ends_when_the_last_request_in_flight_ends() -> None:
    # given: two requests in flight
    quiet = Quiet()
    quiet.enter()
    quiet.enter()
    waiter = asyncio.create_task(quiet.wait(at_most=5))
    await asyncio.sleep(0.05)
    # when: one ends, the waiter keeps waiting; when the other ends, it returns
    quiet.leave()
    await asyncio.sleep(0.05)
    assert not waiter.done()
    quiet.leave()
    await asyncio.wait_for(waiter, 1)
    assert quiet.busy == 0


async def test_wait_gives_up_after_its_bound_on_a_relay_that_is_never_idle() -> None:
    quiet = Quiet()
    quiet.enter()
    started = time.monotonic()
    await quiet.wait(at_most=0.2)
    assert 0.15 < time.monotonic() - started < 2
    quiet.leave()


async def test_a_cancelled_wait_stops_even_as_the_last_request_ends() -> None:
    # given: a periodic task waiting for a gap (as the settler and the pollers do)
    quiet = Quiet()
    quiet.enter()

    async def periodic() -> None:
        while True:
            await quiet.wait(at_most=5)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(periodic())
    await asyncio.sleep(0.05)
    # when: the last request ends and, a loop turn later, shutdown cancels the task
    quiet.leave()
    await asyncio.sleep(0)
    task.cancel()
    # then: the task stops (wait_for on Python 3.11 could swallow this cancel)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 1)
    assert task.cancelled()


class RecordingBackend:
    def __init__(self) -> None:
        self.settled_at: list[float] = []

    def apply_usage(self, events):
        self.settled_at.append(time.monotonic())
        return Settled()

    def close(self) -> None:
        pass


async def test_settlement_waits_for_the_request_in_flight_to_end(tmp_path, monkeypatch) -> None:
    # given: a DB worker settling every 50 ms, with a request in flight
    monkeypatch.setattr(db_module, "SETTLE_EVERY", 0.05)
    backend = RecordingBackend()
    worker = DbWorker(backend, lambda events, settled: None)
    await worker.start_journal(Journal(tmp_path))
    worker.quiet.enter()
    worker.submit_usage(usage_event(1, 10))
    # when: the request ends a while after the first settlement was due
    await asyncio.sleep(0.15)
    ended = time.monotonic()
    worker.quiet.leave()
    for _ in range(100):
        if backend.settled_at:
            break
        await asyncio.sleep(0.01)
    # then: the event was settled only after the request ended
    assert backend.settled_at and backend.settled_at[0] >= ended
    await worker.close()


@pytest.mark.service
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")
async def test_the_stream_consumer_reads_a_backlog_without_waiting_for_a_gap() -> None:
    import redis.asyncio as aioredis

    from billing.mirror import names
    from relay.fast_redis import RespClient
    from relay.ports import encode_event
    from relay.usage_stream import consume_usage

    class CountingQuiet(Quiet):
        waits = 0

        async def wait(self, at_most: float = db_module.QUIET_WAIT) -> None:
            self.waits += 1
            await super().wait(at_most)

    class RecordingDb:
        """The consumer's side of a DB worker: records each batch and how many
        times it had waited for a gap before it."""

        def __init__(self) -> None:
            self.quiet = CountingQuiet()
            self.backend = RecordingBackend()
            self.batches: list[tuple[int, int]] = []

        async def run(self, fn, events):
            self.batches.append((len(events), self.quiet.waits))
            return fn(events)

    # given: 1,200 usage events on the stream and a relay that is never idle
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    await redis.delete(names().usage_stream)
    pipe = redis.pipeline(transaction=False)
    for _ in range(1200):
        pipe.xadd(names().usage_stream, {"e": encode_event(usage_event(1, 10))})
    await pipe.execute()
    db = RecordingDb()
    db.quiet.enter()
    # when: a consumer drains them
    client = RespClient.from_url(os.environ["REDIS_URL"])
    consumer = asyncio.create_task(consume_usage(client, names(), db))  # type: ignore[arg-type]
    try:
        for _ in range(500):
            if sum(n for n, _ in db.batches) >= 1200:
                break
            await asyncio.sleep(0.01)
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await client.aclose()
        await redis.delete(names().usage_stream)
        await redis.aclose()
    # then: every batch of the backlog was read at once, none waited for a gap
    assert db.batches == [(500, 0), (500, 0), (200, 0)]
