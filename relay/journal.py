"""Embedded mode's durable usage queue: append-only files beside the database.

A finished request's usage event is appended here before the response's
last byte: one ``write(2)`` on the event loop, no thread hop and no
transaction per request. The relay's DB thread settles the events from
memory in batches a moment later (relay/db.py). This is as durable as the
database it feeds: SQLite runs in WAL mode with ``synchronous=NORMAL``,
which survives a killed process but not a power cut, and so does a
``write(2)`` to a file.

Each relay process appends to its own segment files and holds an exclusive
``flock`` on each while it lives. A segment is deleted once every event in it
is settled; a full one is closed and a new one started. A segment nobody
holds was left by a dead process: ``replay_orphans`` settles it and deletes
it. Settling is idempotent (request ids are unique), so an event settled
both by its process and by a replay is charged once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from relay.ports import UsageEvent, decode_event, encode_event

log = logging.getLogger("oneproxy.relay.journal")

SUFFIX = ".usage"
# A segment is closed (and deleted once settled) past this size.
ROTATE_BYTES = 4 << 20
# Events per call of the settling function during a replay.
REPLAY_BATCH = 2_000


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int  # open for appending, flock'ed
    size: int = 0
    unsettled: int = 0  # events written here and not yet settled


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._segments: dict[int, _Segment] = {}
        self._current = 0  # the segment appended to

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._start_segment()

    def _start_segment(self) -> None:
        self._current += 1
        path = self.directory / f"{os.getpid()}-{time.time_ns()}-{self._current}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._segments[self._current] = _Segment(path, fd)

    def append(self, event: UsageEvent, counted: bool = True) -> int:
        """Write one event; returns its segment (hand it back to ``settled``,
        unless ``counted`` is False: a record that waits for nothing).
        A failed write (a full disk) is logged and the event stays in memory:
        it is still settled, only not crash-safe."""
        data = encode_event(event) + b"\n"
        number, segment = self._current, self._segments[self._current]
        try:
            written = os.write(segment.fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError:
            log.exception("journaling usage %s failed; it is settled from memory only", event.request_id)
        segment.unsettled += counted
        segment.size += len(data)
        if segment.size >= ROTATE_BYTES:
            self._start_segment()
        return number

    def settled(self, segments: Iterable[int]) -> None:
        """These events are in the database: delete segments that are full
        and wholly settled."""
        for number in segments:
            self._segments[number].unsettled -= 1
        for number, segment in list(self._segments.items()):
            if segment.unsettled == 0 and number != self._current:
                self._drop(number)

    def _drop(self, number: int) -> None:
        segment = self._segments.pop(number)
        segment.path.unlink(missing_ok=True)
        os.close(segment.fd)

    def close(self) -> None:
        """Delete the segments whose events are all settled; keep the rest
        (unlocked now) for ``replay_orphans``."""
        for number, segment in list(self._segments.items()):
            if segment.unsettled == 0:
                self._drop(number)
            else:
                os.close(self._segments.pop(number).fd)
                log.warning("%s: %d usage events left to settle later", segment.path, segment.unsettled)


def replay_orphans(directory: Path, settle: Callable[[list[UsageEvent]], object]) -> int:
    """Settle the segments no live process holds, then delete them; returns
    how many events were settled. ``settle`` must be idempotent; segments it
    fails on are kept for the next run (it may settle what it can first).

    The orphans are read together: a request's "sent" record (relay/ports.py,
    ``kind``) may sit in another segment than its usage event or its "void".
    A "sent" record with neither is a request that went upstream and whose
    process died before settling: it is charged at the hold's estimate."""
    if not directory.is_dir():
        return 0
    held: list[tuple[Path, int]] = []
    events: list[UsageEvent] = []
    try:
        for path in sorted(directory.glob("*" + SUFFIX)):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # settled and deleted meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a live process writes it
            if os.fstat(fd).st_nlink == 0:
                os.close(fd)
                continue  # another replay finished it while we waited
            held.append((path, fd))
            with os.fdopen(os.dup(fd), "rb") as file:
                events += _read_events(path, file.read())
        if not held:
            return 0
        finished = {e.request_id for e in events if e.kind != "sent"}
        lost = {}
        for e in events:
            if e.kind == "sent" and e.request_id not in finished:
                lost[e.request_id] = e
        if lost:
            log.warning("%d request(s) had gone upstream when their relay died: charged at the hold's estimate",
                        len(lost))  # fmt: skip
        todo = [e for e in events if not e.kind] + [dataclasses.replace(e, kind="") for e in lost.values()]
        try:
            for start in range(0, len(todo), REPLAY_BATCH):
                settle(todo[start : start + REPLAY_BATCH])
        except Exception:
            log.exception("settling %d orphaned segment(s) failed; they are kept for the next run", len(held))
            return 0
        for path, _ in held:
            path.unlink(missing_ok=True)
        return len(todo)
    finally:
        for _, fd in held:
            os.close(fd)


def _read_events(path: Path, data: bytes) -> list[UsageEvent]:
    events = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        try:
            events.append(decode_event(line))
        except (ValueError, TypeError, KeyError):
            # Only a write cut short by a power loss leaves this; nothing to recover.
            log.error("%s line %d: not a usage event, skipped", path, number)
    return events
