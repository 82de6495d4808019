"""The relay's one door to the database: a single worker thread.

Snapshot loads and usage writes run there in order, so the relay's view of
balances always moves through the same sequence of states as the database.

Embedded mode, per request: the usage event is durably queued (a small
INSERT, group-committed: while one batch is in the database the next one
gathers) and the response waits only for that. Settlement — usage rows,
charges, balances — follows in larger batches a moment later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from relay.ports import Backend, Settled, UsageEvent

log = logging.getLogger("oneproxy.relay.db")
T = TypeVar("T")
BATCH = 500
# How often queued usage is settled (embedded mode); within DESIGN's ~1 s.
SETTLE_EVERY = 0.25


class DbWorker:
    def __init__(self, backend: Backend, on_settled: Callable[[list[UsageEvent], Settled], None]) -> None:
        self.backend = backend
        self._on_settled = on_settled
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oneproxy-db")
        self._pending: list[tuple[UsageEvent, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._settler: asyncio.Task[None] | None = None
        self._closing = False
        self._writes: set[asyncio.Task[None]] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def start(self, *, settle_queued: bool) -> None:
        """``settle_queued``: embedded mode, where this process settles the
        usage it queued (service mode settles from the Redis stream)."""
        self._flusher = asyncio.create_task(self._flush_forever(), name="oneproxy-usage-flusher")
        if settle_queued:
            self._settler = asyncio.create_task(self._settle_forever(), name="oneproxy-usage-settler")

    def submit_usage(self, event: UsageEvent) -> asyncio.Future[None]:
        """Queue one usage event; the future resolves once it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        self._wake.set()
        return future

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

    async def _flush_forever(self) -> None:
        delay = 0.1
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            events = [event for event, _ in batch]
            try:
                await self.run(self.backend.queue_usage, events)
            except Exception:
                # Keep the events and try again: usage is never dropped.
                log.exception("writing %d usage events failed; retrying in %.1fs", len(events), delay)
                self._pending[:0] = batch
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _settle_forever(self) -> None:
        while True:
            await self.settle_now()
            await asyncio.sleep(SETTLE_EVERY)

    async def settle_now(self) -> int:
        """Settle everything queued so far; returns how many events."""
        done = 0
        while True:
            try:
                events, settled = await self.run(self.backend.settle_queued)
            except Exception:
                log.exception("settling queued usage failed; retrying shortly")
                return done
            if not events:
                return done
            self._on_settled(events, settled)
            done += len(events)

    async def close(self) -> None:
        """Flush what is queued (a clean shutdown loses nothing), then stop."""
        self._closing = True
        self._wake.set()
        await asyncio.gather(*self._writes, return_exceptions=True)
        if self._flusher is not None:
            await self._flusher
        if self._settler is not None:
            self._settler.cancel()
            await asyncio.gather(self._settler, return_exceptions=True)
            await self.settle_now()
        await self.run(self.backend.close)
        self._executor.shutdown(wait=True)
