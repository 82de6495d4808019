"""Embedded mode's usage journal (relay/journal.py): what a live process
holds is left alone, what a dead one left is settled once and deleted, and
settled segments do not pile up."""

from __future__ import annotations

import fcntl
import os

import pytest

from relay import journal as journal_module
from relay.journal import SUFFIX, Journal, replay_orphans
from relay.ports import decode_event
from tests.billing.events import usage_event


def segments(directory) -> list:
    return sorted(directory.glob("*" + SUFFIX))


def test_a_settled_full_segment_is_deleted_and_the_current_one_kept(tmp_path, monkeypatch) -> None:
    # given: segments that rotate after about two events
    monkeypatch.setattr(journal_module, "ROTATE_BYTES", 600)
    journal = Journal(tmp_path)
    journal.open()
    placed = [journal.append(usage_event(1, 10)) for _ in range(5)]
    assert len(set(placed)) >= 2 and len(segments(tmp_path)) == len(set(placed))
    # when: every event is settled
    journal.settled(placed)
    # then: only the segment still being written remains
    assert len(segments(tmp_path)) == 1
    journal.close()
    assert segments(tmp_path) == []


def test_close_keeps_unsettled_events_for_a_replay(tmp_path) -> None:
    # given: a process that journaled two events and settled one
    journal = Journal(tmp_path)
    journal.open()
    first, second = usage_event(1, 10), usage_event(1, 20)
    journal.settled([journal.append(first)])
    journal.append(second)
    # when: it stops
    journal.close()
    # then: the file remains, unlocked, and a replay settles both (settling is idempotent)
    seen: list[str] = []
    assert replay_orphans(tmp_path, lambda events: seen.extend(e.request_id for e in events)) == 2
    assert seen == [first.request_id, second.request_id]
    assert segments(tmp_path) == []


def test_replay_leaves_a_live_process_segments_alone(tmp_path) -> None:
    # given: a live journal with an event (its flock held)
    journal = Journal(tmp_path)
    journal.open()
    journal.append(usage_event(1, 10))
    # when / then
    assert replay_orphans(tmp_path, lambda events: pytest.fail("settled a live segment")) == 0
    assert len(segments(tmp_path)) == 1
    journal.close()


def test_a_segment_whose_settling_fails_is_kept(tmp_path) -> None:
    # given: an orphaned segment
    event = usage_event(1, 10)
    (tmp_path / f"dead{SUFFIX}").write_bytes(journal_module.encode_event(event) + b"\n")

    def refuse(events):
        raise RuntimeError("database refused")

    # when / then: kept on failure, settled by the next run
    assert replay_orphans(tmp_path, refuse) == 0
    assert len(segments(tmp_path)) == 1
    assert replay_orphans(tmp_path, lambda events: None) == 1
    assert segments(tmp_path) == []


def test_a_torn_last_line_is_skipped_and_the_rest_settled(tmp_path) -> None:
    # given: a segment whose last write was cut short
    good = usage_event(1, 10)
    raw = journal_module.encode_event(good) + b"\n" + journal_module.encode_event(usage_event(1, 20))[:40]
    (tmp_path / f"dead{SUFFIX}").write_bytes(raw)
    # when
    seen: list = []
    assert replay_orphans(tmp_path, seen.extend) == 1
    # then
    assert [e.request_id for e in seen] == [good.request_id]


def test_journal_lines_round_trip_and_the_lock_is_exclusive(tmp_path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    event = usage_event(7, 1234, token_id=3)
    journal.append(event)
    (path,) = segments(tmp_path)
    assert decode_event(path.read_bytes().rstrip(b"\n")) == event
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
        journal.close()
