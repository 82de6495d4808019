"""billing.settle_usage: usage a dead relay process left behind (on the Redis
stream, or in an embedded relay's usage journal) is written, once."""

from __future__ import annotations

import pytest

from billing import services, tasks
from billing.models import LedgerEntry, UsageLog
from tests.billing.events import assert_books_exact, usage_event


@pytest.mark.embedded
@pytest.mark.django_db
def test_embedded_mode_settles_what_a_dead_relay_left_in_its_journal(make_user) -> None:
    from billing.usage_sink import apply_usage, journal_dir
    from relay.journal import SUFFIX, Journal

    user, _ = make_user("ghost")
    # given: a relay that journaled three events and died after settling one
    dead = Journal(journal_dir())
    dead.open()
    settled, left, also_left = usage_event(user.pk, 300), usage_event(user.pk, 500), usage_event(user.pk, 700)
    apply_usage([settled])
    dead.settled([dead.append(settled)])
    dead.append(left)
    dead.append(also_left)
    dead.close()  # what death does to its flocks
    # and: a live relay with an event of its own, not settled yet
    live = Journal(journal_dir())
    live.open()
    mine = live.append(usage_event(user.pk, 900))
    try:
        # when
        written = tasks.settle_usage.apply().get()
        # then: the dead relay's journal is replayed (3 events, one of them
        # already settled), each charged once; the live one's is left alone
        assert written == 3
        assert set(UsageLog.objects.values_list("request_id", flat=True)) == {
            settled.request_id,
            left.request_id,
            also_left.request_id,
        }
        assert_books_exact(user)
        assert -sum(LedgerEntry.objects.filter(user=user, kind="charge").values_list("amount", flat=True)) == 1_500
        assert len(list(journal_dir().glob("*" + SUFFIX))) == 1
        assert tasks.settle_usage() == 0
    finally:
        live.settled([mine])  # leave nothing behind for later tests
        live.close()


@pytest.fixture
def stream(redis_client):
    """The usage stream with its consumer group, and helpers to play a relay."""
    from billing import mirror
    from billing.mirror import names
    from relay.ports import encode_event
    from relay.redis_names import USAGE_GROUP

    mirror.ensure_group()

    class Stream:
        client = redis_client

        def add(self, event, entry_id: str = "*") -> bytes:
            return redis_client.xadd(names().usage_stream, {"e": encode_event(event)}, id=entry_id)

        def read_as(self, consumer: str) -> list[bytes]:
            reply = redis_client.xreadgroup(USAGE_GROUP, consumer, {names().usage_stream: ">"}, count=100)
            return [entry_id for entry_id, _ in (reply[0][1] if reply else [])]

        def age(self, consumer: str, ids: list[bytes], idle_ms: int) -> None:
            """Make entries look unacknowledged by ``consumer`` for ``idle_ms``."""
            redis_client.xclaim(names().usage_stream, USAGE_GROUP, consumer, 0, ids, idle=idle_ms)

        def length(self) -> int:
            return redis_client.xlen(names().usage_stream)

        def pending(self) -> int:
            return redis_client.xpending(names().usage_stream, USAGE_GROUP)["pending"]

        def old_id(self, seconds: int) -> str:
            now_s, now_us = redis_client.time()
            return f"{now_s * 1000 + now_us // 1000 - seconds * 1000}-0"

    return Stream()


@pytest.mark.service
@pytest.mark.django_db
def test_entries_a_dead_consumer_left_pending_are_written_once(make_user, stream) -> None:
    # given: a relay read two events, then died before writing them
    bob, _ = make_user("bob")
    services.topup(bob, 10_000_000)
    token, _ = services.create_token(user=bob, name="t", quota=5_000_000)
    first, second = usage_event(bob.pk, 1_234, token_id=token.pk), usage_event(bob.pk, 4_321, token_id=token.pk)
    stream.add(first)
    stream.add(second)
    ids = stream.read_as("relay-dead-1")
    stream.age("relay-dead-1", ids, idle_ms=61_000)
    # when
    settled = tasks.settle_usage.apply().get()
    again = tasks.settle_usage()
    # then
    assert (settled, again) == (2, 0)
    assert (stream.length(), stream.pending()) == (0, 0)
    assert set(UsageLog.objects.values_list("request_id", "cost")) == {
        (first.request_id, 1_234),
        (second.request_id, 4_321),
    }
    bob.refresh_from_db()
    token.refresh_from_db()
    assert bob.balance == 10_000_000 - 5_555
    assert token.used == 5_555
    assert_books_exact(bob)
    assert LedgerEntry.objects.filter(user=bob, kind="charge").count() == 1  # one batch, one charge


@pytest.mark.service
@pytest.mark.django_db
def test_a_live_consumer_keeps_what_it_just_read(make_user, stream) -> None:
    # given: read 59 s ago by a relay that is still working on it
    bob, _ = make_user("bob")
    stream.add(usage_event(bob.pk, 100))
    ids = stream.read_as("relay-alive")
    stream.age("relay-alive", ids, idle_ms=59_000)
    # when
    settled = tasks.settle_usage()
    # then
    assert settled == 0
    assert (stream.length(), stream.pending()) == (1, 1)
    assert not UsageLog.objects.exists()


@pytest.mark.service
@pytest.mark.django_db
def test_entries_nobody_read_are_written_when_no_relay_is_reading(make_user, stream) -> None:
    # given: one event queued 2 minutes ago (no relay alive to read it), one just now
    bob, _ = make_user("bob")
    services.topup(bob, 1_000_000)
    old, new = usage_event(bob.pk, 700), usage_event(bob.pk, 300)
    stream.add(old, entry_id=stream.old_id(120))
    stream.add(new)
    # when
    settled = tasks.settle_usage()
    # then: both go, since a live relay would have read the old one within a second
    assert settled == 2
    assert stream.length() == 0
    bob.refresh_from_db()
    assert bob.balance == 999_000


@pytest.mark.service
@pytest.mark.django_db
def test_recent_unread_entries_are_left_to_the_relays(make_user, stream) -> None:
    # given
    bob, _ = make_user("bob")
    stream.add(usage_event(bob.pk, 300))
    # when
    settled = tasks.settle_usage()
    # then
    assert settled == 0
    assert stream.length() == 1


@pytest.mark.service
@pytest.mark.django_db
def test_an_event_already_written_is_not_charged_again(make_user, stream) -> None:
    # given: the dead relay wrote the event but died before acknowledging it
    from billing.usage_sink import apply_usage

    bob, _ = make_user("bob")
    services.topup(bob, 1_000_000)
    event = usage_event(bob.pk, 250_000)
    apply_usage([event])
    stream.add(event)
    stream.age("relay-dead-2", stream.read_as("relay-dead-2"), idle_ms=120_000)
    # when
    settled = tasks.settle_usage()
    # then
    assert settled == 1
    assert (stream.length(), stream.pending()) == (0, 0)
    bob.refresh_from_db()
    assert bob.balance == 750_000
    assert UsageLog.objects.count() == 1


@pytest.mark.service
@pytest.mark.django_db
def test_an_event_the_database_refuses_stays_on_the_stream(make_user, stream) -> None:
    # given: one good event and one for a user that no longer exists
    bob, _ = make_user("bob")
    good, orphan = usage_event(bob.pk, 10), usage_event(987_654, 10)
    stream.add(good)
    stream.add(orphan)
    stream.age("relay-dead-3", stream.read_as("relay-dead-3"), idle_ms=120_000)
    # when
    settled = tasks.settle_usage()
    # then
    assert settled == 1
    assert list(UsageLog.objects.values_list("request_id", flat=True)) == [good.request_id]
    assert (stream.length(), stream.pending()) == (1, 1)


@pytest.mark.service
@pytest.mark.django_db
def test_an_unreadable_entry_is_dropped_and_logged(stream, caplog) -> None:
    # given
    from billing.mirror import names

    stream.client.xadd(names().usage_stream, {"e": b"{not json"})
    stream.age("relay-dead-4", stream.read_as("relay-dead-4"), idle_ms=120_000)
    # when
    settled = tasks.settle_usage()
    # then
    assert settled == 1
    assert stream.length() == 0
    assert "is unreadable and is dropped" in caplog.text
