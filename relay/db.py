"""The relay's one door to the database: a single worker thread.

Snapshot loads and usage writes run there in order, so the relay's view of
balances always moves through the same sequence of states as the database.

Embedded mode, per request: the usage event is appended to the journal
(relay/journal.py) and kept in memory; the response waits for nothing else.
Settlement (usage rows, charges, balances) follows in batches a moment
later, in this thread. Service mode queues usage on a Redis stream instead
(relay/ledger.py) and settles from there (relay/usage_stream.py).

Periodic batches (settlement, snapshot polls, key stats) start in a gap
between requests when one comes soon enough (``Quiet``): a batch holds the
GIL for a millisecond or more, and a request arriving during it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from relay.journal import Journal, replay_orphans
from relay.ports import Backend, Settled, UsageEvent

log = logging.getLogger("oneproxy.relay.db")
T = TypeVar("T")
BATCH = 2_000
# How often journaled usage is settled (embedded mode); within DESIGN's ~1 s.
SETTLE_EVERY = 0.25
DB_THREAD_NICENESS = 10
# How long a periodic batch waits for a moment with no request in flight
# before it runs anyway (a busy relay has none).
QUIET_WAIT = 0.25
# Waits before retrying events the database refused, growing to the last one.
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 15.0, 30.0)


# How often, at most, the DB thread gives freed memory back to the OS.
TRIM_EVERY = 10.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library, another OS)."""
    try:
        import ctypes

        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def _yield_to_loop() -> None:
    """Run this thread at a lower priority than the event loop. Its batches
    (SQLite's own work included, which runs without the GIL) otherwise share
    the core with the loop on equal terms, and a request arriving during a
    batch waits for it: measured as ~1 ms of the relay's p99 at one
    connection (docs/BENCHMARKS.md). Linux applies this to the one thread."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DB_THREAD_NICENESS)


class Quiet:
    """Counts the relay's requests in flight, so that background batches can
    start when none is. On a lightly loaded relay that is most of the time,
    and no request then waits behind a batch: measured as the relay's p99
    at one connection (docs/BENCHMARKS.md)."""

    __slots__ = ("_waiter", "busy")

    def __init__(self) -> None:
        self.busy = 0
        self._waiter: asyncio.Future[None] | None = None

    def enter(self) -> None:
        self.busy += 1

    def leave(self) -> None:
        self.busy -= 1
        if not self.busy and self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, at_most: float = QUIET_WAIT) -> None:
        """Return when no request is in flight, or after ``at_most`` seconds."""
        if not self.busy:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the inner future completes, and a
        # cancelled background task must stop (shutdown waits for it). It
        # never cancels the shared waiter either.
        await asyncio.wait((self._waiter,), timeout=at_most)


class DbWorker:
    def __init__(
        self,
        backend: Backend,
        on_settled: Callable[[list[UsageEvent], Settled], None],
        quiet: Quiet | None = None,
    ) -> None:
        self.backend = backend
        self.quiet = quiet or Quiet()
        self._on_settled = on_settled
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oneproxy-db", initializer=_yield_to_loop)
        self._journal: Journal | None = None
        self._pending: list[tuple[UsageEvent, int]] = []  # (event, journal segment)
        self._stuck: list[tuple[UsageEvent, int]] = []  # refused by the database, retried with backoff
        self._failures = 0
        self._retry_at = 0.0
        self._settler: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._trimmed_at = 0.0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_quietly(self, fn: Callable[..., T], *args: Any) -> T:
        """``run`` for periodic work: first wait for a gap between requests."""
        await self.quiet.wait()
        return await self.run(fn, *args)

    async def start_journal(self, journal: Journal) -> None:
        """Embedded mode: first settle what dead processes left in the
        journal directory, then journal and settle this process's usage."""
        replayed = await self.run(replay_orphans, journal.directory, self.backend.apply_usage)
        if replayed:
            log.warning("settled %d usage events a dead relay process left in %s", replayed, journal.directory)
        journal.open()
        self._journal = journal
        self._settler = asyncio.create_task(self._settle_forever(), name="oneproxy-usage-settler")

    def journal_sent(self, event: UsageEvent) -> int:
        """Journal that a request went upstream (``event`` is its charge at
        the hold's estimate); returns the segment, for ``journal_done``."""
        assert self._journal is not None
        return self._journal.append(event)

    def journal_done(self, segment: int, void: UsageEvent | None) -> None:
        """The request of a "sent" record settled (its usage event supersedes
        the record) or never left (``void``, a "void" record, cancels it)."""
        assert self._journal is not None
        if void is not None:
            self._journal.append(void, counted=False)
        self._journal.settled((segment,))

    def submit_usage(self, event: UsageEvent) -> None:
        """Journal one event (durable when this returns); settled shortly."""
        assert self._journal is not None
        self._pending.append((event, self._journal.append(event)))

    def submit_key_transition(self, transition) -> None:  # type: ignore[no-untyped-def]
        """Persist a key's new state in the background (rare; not batched)."""
        task = asyncio.create_task(self._write_transition(transition))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_transition(self, transition) -> None:  # type: ignore[no-untyped-def]
        try:
            await self.run(self.backend.record_key_transitions, [transition])
        except Exception:
            log.exception("recording key %s -> %s failed", transition.key_id, transition.state)

    async def _settle_forever(self) -> None:
        while True:
            await asyncio.sleep(SETTLE_EVERY)
            await self.quiet.wait()
            if await self.settle_now():
                await self._trim_now_and_then()
            if self._stuck and time.monotonic() >= self._retry_at:
                stuck, self._stuck = self._stuck, []
                await self._settle_singly(stuck)

    async def settle_now(self) -> int:
        """Settle everything journaled so far; returns how many events."""
        done = 0
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                settled = await self.run(self.backend.apply_usage, [event for event, _ in batch])
            except asyncio.CancelledError:
                self._pending[:0] = batch  # settled again at close: idempotent
                raise
            except Exception:
                log.exception("settling %d usage events failed; settling them one by one", len(batch))
                done += await self._settle_singly(batch)
                continue
            self._settled(batch, settled)
            done += len(batch)
        return done

    async def _settle_singly(self, batch: list[tuple[UsageEvent, int]]) -> int:
        """One transaction per event, so an event the database refuses holds
        back only itself: it is kept (and logged), retried later with backoff,
        and its journal segment stays on disk."""
        stuck: list[tuple[UsageEvent, int]] = []
        done = 0
        for item in batch:
            try:
                settled = await self.run(self.backend.apply_usage, [item[0]])
            except Exception:
                log.exception("usage event %s cannot be settled yet; keeping it", item[0].request_id)
                stuck.append(item)
                continue
            self._settled([item], settled)
            done += 1
        self._stuck += stuck
        self._failures = self._failures + 1 if self._stuck else 0
        if stuck:
            self._retry_at = time.monotonic() + RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS)) - 1]
        return done

    def _trim(self) -> None:
        """Give the memory this thread freed back to the OS. Settling a
        batch (and SQLite under it) allocates and frees in this thread's own
        malloc arena, which glibc does not shrink by itself: under steady load
        the embedded relay grew ~0.4 KB per request, none of it live Python
        objects (tracemalloc, gc counts), all of it given back by
        malloc_trim (docs/RELIABILITY.md, the soak). Runs in this thread,
        without the GIL (ctypes releases it)."""
        if _malloc_trim is not None:
            _malloc_trim(0)

    async def _trim_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._trimmed_at >= TRIM_EVERY:
            self._trimmed_at = now
            await self.run(self._trim)

    def _settled(self, batch: list[tuple[UsageEvent, int]], settled: Settled) -> None:
        self._on_settled([event for event, _ in batch], settled)
        assert self._journal is not None
        self._journal.settled(segment for _, segment in batch)

    async def close(self) -> None:
        """Settle what is queued (a clean shutdown leaves nothing behind), then stop."""
        await asyncio.gather(*self._writes, return_exceptions=True)
        if self._settler is not None:
            self._settler.cancel()
            await asyncio.gather(self._settler, return_exceptions=True)
            await self.settle_now()
            stuck, self._stuck = self._stuck, []
            await self._settle_singly(stuck)
        if self._journal is not None:
            self._journal.close()
        await self.run(self.backend.close)
        self._executor.shutdown(wait=True)
