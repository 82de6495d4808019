"""Billing's business verbs: users, tokens, top-ups, adjustments, redemption
codes, and the scheduled upkeep (settlement, reconciliation, retention).

Money moves only here, inside ``transaction.atomic()`` with a row lock on the
user, so the balance column always equals the sum of the ledger.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from billing import history, rollups
from billing.models import (
    BudgetPeriod,
    BudgetSpend,
    Group,
    HistoryState,
    LedgerEntry,
    ReconcileReport,
    RedemptionCode,
    SettlementBatch,
    Team,
    Token,
    UsageLog,
    User,
)
from billing.money import to_usd
from billing.usage_sink import apply_usage
from core.services import bump_config_version
from relay.ports import UsageEvent
from relay.relay_keys import display_prefix, hash_key, new_access_token, new_relay_key

log = logging.getLogger("oneproxy.billing")


def issue_access_token(user: User) -> str:
    """Give the user a new management access token; returns it (shown once)."""
    token = new_access_token()
    user.access_token_hash = hash_key(token)
    user.access_token_prefix = display_prefix(token)
    user.save(update_fields=["access_token_hash", "access_token_prefix"])
    return token


def set_access_token(user: User, token: str) -> None:
    user.access_token_hash = hash_key(token)
    user.access_token_prefix = display_prefix(token)
    user.save(update_fields=["access_token_hash", "access_token_prefix"])


@transaction.atomic
def create_user(
    *,
    username: str,
    password: str | None = None,
    group: Group | None = None,
    team: Team | None = None,
    role: str = User.Role.MEMBER,
    email: str = "",
) -> tuple[User, str]:
    """Create a user and their management access token; returns both."""
    user = User(username=username, role=role, team=team, email=email)
    if group is not None:
        user.group = group
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user, issue_access_token(user)


def record_entry(
    user: User,
    kind: str,
    amount: int,
    *,
    actor: User | None = None,
    note: str = "",
    usage_id: int | None = None,
) -> LedgerEntry:
    """Append one ledger entry and move the balance with it. Call inside a
    transaction that holds the user's row lock."""
    user.balance += amount
    User.objects.filter(pk=user.pk).update(balance=user.balance)
    return LedgerEntry.objects.create(
        user=user,
        kind=kind,
        amount=amount,
        balance_after=user.balance,
        actor=actor,
        note=note[:255],
        usage_id=usage_id,
    )


def balance_moved(user_id: int, amount: int) -> None:
    """Tell the relay, once the transaction commits, that a balance moved
    outside its own charging: embedded relays reload their snapshot; in
    service mode the user's Redis mirror moves by the same amount (only if
    it exists — a missing one is seeded from the database, which has it)."""
    transaction.on_commit(bump_config_version)
    if settings.REDIS_URL:
        transaction.on_commit(lambda: _credit_mirror(user_id, amount))


def _credit_mirror(user_id: int, amount: int) -> None:
    from billing import mirror

    try:
        mirror.credit(user_id, amount)
    except redis.RedisError:
        # The database has the money; the mirror stays short (never over)
        # until billing.reconcile drops it for re-seeding.
        log.exception("could not move the balance mirror of user %s by %s µUSD", user_id, amount)


def _move_balance(user: User, kind: str, amount: int, *, actor: User | None, note: str) -> LedgerEntry:
    locked = User.objects.select_for_update().get(pk=user.pk)
    entry = record_entry(locked, kind, amount, actor=actor, note=note)
    user.balance = locked.balance
    balance_moved(user.pk, amount)
    return entry


@transaction.atomic
def topup(user: User, amount: int, *, actor: User | None = None, note: str = "") -> LedgerEntry:
    if amount <= 0:
        raise ValueError("a top-up must be positive")
    return _move_balance(user, LedgerEntry.Kind.TOPUP, amount, actor=actor, note=note)


@transaction.atomic
def adjust(user: User, amount: int, *, actor: User, note: str) -> LedgerEntry:
    """An operator's correction, up or down; it may take a balance below zero
    (claiming back a mistaken top-up that was partly spent)."""
    if amount == 0:
        raise ValueError("an adjustment must not be zero")
    if not note.strip():
        raise ValueError("an adjustment needs a note saying why")
    return _move_balance(user, LedgerEntry.Kind.ADJUSTMENT, amount, actor=actor, note=note.strip())


# -- redemption codes ------------------------------------------------------------

# 32 symbols, without the look-alikes 0/O and 1/I: 16 of them are 80 random bits.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_GROUPS = 4
MAX_CODES_PER_BATCH = 1000


class RedemptionError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_redemption_code() -> str:
    symbols = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUPS * 4))
    return "-".join(symbols[i : i + 4] for i in range(0, len(symbols), 4))


def normalize_code(text: str) -> str:
    """What a user typed → the stored form: case and separators do not matter."""
    symbols = re.sub(r"[^A-Za-z0-9]", "", text).upper()
    return "-".join(symbols[i : i + 4] for i in range(0, len(symbols), 4))


def create_redemption_codes(
    *, name: str, count: int, amount: int, expires_at: datetime | None = None, created_by: User | None = None
) -> list[RedemptionCode]:
    """A batch of ``count`` codes worth ``amount`` µUSD each."""
    if not 1 <= count <= MAX_CODES_PER_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_CODES_PER_BATCH} codes")
    if amount <= 0:
        raise ValueError("a code must be worth more than zero")
    for _ in range(3):
        rows = [
            RedemptionCode(
                code=new_redemption_code(), name=name, amount=amount, expires_at=expires_at, created_by=created_by
            )
            for _ in range(count)
        ]
        try:
            with transaction.atomic():
                RedemptionCode.objects.bulk_create(rows)
        except IntegrityError:  # a collision of 80 random bits; draw again
            continue
        # bulk_create sets primary keys on PostgreSQL and SQLite ≥ 3.35 only.
        return list(RedemptionCode.objects.filter(code__in=[r.code for r in rows]).order_by("pk"))
    raise RuntimeError("could not draw unique redemption codes")


@transaction.atomic
def redeem(user: User, text: str, *, now: datetime | None = None) -> LedgerEntry:
    """Credit a code's amount to ``user``. The claim is one conditional UPDATE
    in the same transaction as the ledger entry: of any number of racing
    requests exactly one sees it return 1, the rest see the row already
    redeemed (PostgreSQL re-checks the WHERE after the winner commits; SQLite
    runs the transactions one at a time)."""
    now = now or timezone.now()
    code = normalize_code(text)
    claimed = (
        RedemptionCode.objects.unused(now).filter(code=code).update(redeemed_by=user, redeemed_at=now) if code else 0
    )
    if claimed != 1:
        row = RedemptionCode.objects.filter(code=code).first() if code else None
        if row is None:
            raise RedemptionError("code_invalid", "This redemption code does not exist.")
        if row.redeemed_at is not None:
            raise RedemptionError("code_redeemed", "This redemption code has already been redeemed.")
        raise RedemptionError("code_expired", "This redemption code has expired.")
    row = RedemptionCode.objects.get(code=code)
    note = f"code {row.code} ({row.name})"
    return _move_balance(user, LedgerEntry.Kind.REDEMPTION, row.amount, actor=user, note=note)


def create_token(
    *,
    user: User,
    name: str,
    quota: int | None = None,
    expires_at: datetime | None = None,
    models: list[str] | None = None,
    subnets: list[str] | None = None,
    **limits: int | None,
) -> tuple[Token, str]:
    """Create a relay token; returns it with its key, which is never shown again."""
    key = new_relay_key()
    token = Token.objects.create(
        user=user,
        name=name,
        key_hash=hash_key(key),
        key_prefix=display_prefix(key),
        quota=quota,
        expires_at=expires_at,
        models=models or [],
        subnets=subnets or [],
        **limits,
    )
    return token, key


def delete_token(token: Token) -> None:
    """A used token is disabled and hidden so usage history keeps pointing at
    it (the rollups, after retention pruned its raw rows)."""
    if token.rollups.exists() or token.usage.exists():
        token.status = Token.Status.DISABLED
        token.deleted_at = timezone.now()
        token.save(update_fields=["status", "deleted_at"])
    else:
        token.delete()


# -- scheduled upkeep ------------------------------------------------------------------

# Entries a relay read from the usage stream and has not acknowledged for this
# long belong to a dead process: a live one writes a batch within a second or two.
STRANDED_AFTER_MS = 60_000
# A mirror that disagrees with the database is dropped only after it has read
# the same for this long with nothing of its user queued: then no hold of that
# user can still be in flight (see reconcile).
STALE_HOLD_SECONDS = 900
PRUNE_BATCH = 5_000
_REPORTED_DRIFTS = 1_000


def settle_stranded_usage(*, min_idle_ms: int = STRANDED_AFTER_MS) -> int:
    """Write the usage a dead relay process left behind; returns how many
    events were written. Writing is idempotent (request ids are unique), so
    an event a slow-but-alive relay also writes is charged once.

    Service mode: events on the Redis stream read but not acknowledged for
    ``min_idle_ms``, or never read while no relay is alive to read them; they
    are acknowledged and deleted once written. An event the database refuses
    stays on the stream, logged, for the next run: usage is never dropped.

    Embedded mode: the usage journals (relay/journal.py) no live relay
    process holds; a live one settles its own within a second.
    """
    if not settings.REDIS_URL:
        from billing.usage_sink import journal_dir
        from relay.journal import replay_orphans

        total = replay_orphans(journal_dir(), _write_journaled)
        if total:
            log.warning("settled %d journaled usage events a dead relay process left behind", total)
        return total
    from billing import mirror

    settled = 0
    for batch in mirror.stranded_batches(min_idle_ms):
        written = _write_usage(batch)
        mirror.done(written)
        settled += len(written)
    if settled:
        log.warning("settled %d usage events left on the stream by a dead relay process", settled)
    return settled


def _write_journaled(events: list[UsageEvent]) -> None:
    """Write a replayed journal batch; raise if any event was refused, so the
    journal keeps it (what could be written is written, once)."""
    written = _write_usage([(event.request_id.encode(), event) for event in events])
    if len(written) < len(events):
        raise RuntimeError(f"{len(events) - len(written)} usage events could not be written")


def _write_usage(batch: list[tuple[bytes, UsageEvent | None]]) -> list[bytes]:
    """Write a batch (one event at a time if the batch fails); the ids done with."""
    unreadable = [entry_id for entry_id, event in batch if event is None]  # logged when decoded; never writable
    readable = [(entry_id, event) for entry_id, event in batch if event is not None]
    # Any failure, not only the database's: one poisoned event (e.g. for a
    # deleted user) must not hold back the rest of the batch.
    try:
        apply_usage([event for _, event in readable])
        return unreadable + [entry_id for entry_id, _ in readable]
    except Exception:
        log.exception("writing %d stranded usage events failed; trying one by one", len(readable))
    written = list(unreadable)
    for entry_id, event in readable:
        try:
            apply_usage([event])
        except Exception:
            log.exception("usage event %s (request %s) could not be written", entry_id, event.request_id)
            continue
        written.append(entry_id)
    return written


@dataclass
class _MirrorFindings:
    checked: int = 0
    pending: int = 0
    released: list[dict[str, int]] = field(default_factory=list)


def reconcile(*, stale_hold_seconds: int = STALE_HOLD_SECONDS, now: datetime | None = None) -> ReconcileReport:
    """Prove balance = ledger sum = settled usage, fix what is not, and record
    it in a ReconcileReport. It holds after retention pruned the raw rows:
    settled usage is the rollups, and the rollups are proven against the raw
    rows while those exist.

    1. Each user's balance column is compared with the sum of their ledger;
       a difference is re-checked under the user's row lock and the column is
       set to the sum (the ledger is the truth; no entry is written).
    2. Each user's charges are compared with their settled usage (the day
       rollups, and rows not yet back-filled): never expected, not auto-fixed.
    3. The hours whose rollups changed since the previous run (the last day
       on a first run) are compared with their raw rows, and their days with
       the sum of their hours: never expected, not auto-fixed.
    4. The budget counters of the current day, week and month are compared
       with the rollups and corrected to them.
    5. Service mode: holds older than ``stale_hold_seconds`` that never
       settled (their relay process died) are given back exactly, from the
       relay's hold registry; then mirrors that still disagree with the
       database are re-synced — see ``_resync_mirrors``.
    """
    now = now or timezone.now()
    previous = ReconcileReport.objects.order_by("-id").values_list("created_at", flat=True).first()
    report = ReconcileReport(service_mode=bool(settings.REDIS_URL))
    per_user = LedgerEntry.objects.order_by().values("user").annotate(total=Sum("amount"))
    sums = dict(per_user.values_list("user", "total"))
    drift: list[dict[str, Any]] = []
    for user_id, balance in list(User.objects.order_by("pk").values_list("pk", "balance")):
        report.users_checked += 1
        if balance != sums.get(user_id, 0):
            fixed = _fix_balance(user_id)
            if fixed is not None:
                drift.append(fixed)
    report.drifted_users = len(drift)
    report.drift = drift[:_REPORTED_DRIFTS]
    _check_usage(report)
    _check_rollups(report, since=(previous - ROLLUP_CHECK_MARGIN) if previous else timezone.now() - timedelta(days=1))
    _check_budget_counters(report, now)
    report.unrolled_usage = UsageLog.objects.filter(batch__isnull=True).count()
    if settings.REDIS_URL:
        from billing import mirror

        report.stale_holds_released = mirror.release_stale_holds(stale_hold_seconds, now.timestamp())
        found = _resync_mirrors(now, stale_hold_seconds)
        report.mirrors_checked, report.mirrors_pending = found.checked, found.pending
        report.mirrors_released = found.released
    report.save()
    if drift or report.budget_drifted:
        bump_config_version()  # embedded relays reload the corrected balances and counters
    if drift:
        log.warning(
            "reconcile #%s: %d balance(s) differed from their ledger and were fixed: %s",
            report.pk,
            len(drift),
            ", ".join(f"user {d['user_id']} {to_usd(d['drift'])} USD" for d in drift[:20]),
        )
    if report.usage_drifted_users or report.rollup_drifted_hours:
        log.error(
            "reconcile #%s: %d user(s) charged unlike their settled usage, %d hour(s) of rollups unlike their rows",
            report.pk,
            report.usage_drifted_users,
            report.rollup_drifted_hours,
        )
    if report.budget_drifted:
        log.warning("reconcile #%s: %d budget counter(s) set to the rollups", report.pk, report.budget_drifted)
    if report.unrolled_usage:
        log.warning(
            "reconcile #%s: %d usage row(s) are not rolled up yet: run `manage.py backfill_history`",
            report.pk,
            report.unrolled_usage,
        )
    return report


# Rollups a settlement touched just before the previous run may commit just
# after it: the hours checked reach back this much further.
ROLLUP_CHECK_MARGIN = timedelta(minutes=5)


def _check_usage(report: ReconcileReport) -> None:
    found = rollups.usage_drift()
    names = dict(User.objects.filter(pk__in=[user for user, _, _ in found]).values_list("pk", "username"))
    report.usage_drifted_users = len(found)
    report.usage_drift = [
        {"user_id": user, "username": names.get(user, ""), "charged": charged, "settled": settled,
         "drift": charged - settled}
        for user, charged, settled in found[:_REPORTED_DRIFTS]
    ]  # fmt: skip


def _check_rollups(report: ReconcileReport, *, since: datetime) -> None:
    """Compare the hours that settlement batches since ``since`` wrote to
    (and whose raw rows are kept) with their rows, and their days with the
    sum of their hours."""
    written = UsageLog.objects.filter(batch__created_at__gte=since, batch__backfill=False)
    raw_from = history.pruned_before()
    if raw_from is not None:
        written = written.filter(created_at__gte=raw_from)
    hours = sorted(set(written.annotate(hour=TruncHour("created_at", tzinfo=UTC)).values_list("hour", flat=True)))
    found: list[dict[str, Any]] = []
    for hour in hours:
        found += rollups.hour_drift(hour)
    for day in sorted({hour.replace(hour=0) for hour in hours}):
        found += rollups.day_drift(day)
    report.hours_checked = len(hours)
    report.rollup_drifted_hours = len({(d["span"], d["start"]) for d in found})
    report.rollup_drift = found[:_REPORTED_DRIFTS]


def _check_budget_counters(report: ReconcileReport, now: datetime) -> None:
    """Set the counters of the current periods that differ from the rollups
    to the rollups (by the difference seen, so settlement meanwhile is kept)."""
    from relay.periods import PERIODS, period_bounds

    fixed: list[dict[str, Any]] = []
    for period in PERIODS:
        start, end = (datetime.fromtimestamp(t, UTC) for t in period_bounds(period, now.timestamp()))
        for subject in BudgetSpend.Subject.values:
            for subject_id, counter, rolled in rollups.counter_drift(subject, period, start, end):
                with transaction.atomic():
                    rollups.move_counter(subject, subject_id, period, start, rolled - counter)
                fixed.append(
                    {"subject": subject, "subject_id": subject_id, "period": period, "start": start.isoformat(),
                     "counter": counter, "rollups": rolled}
                )  # fmt: skip
    report.budget_drifted = len(fixed)
    report.budget_drift = fixed[:_REPORTED_DRIFTS]


@transaction.atomic
def _fix_balance(user_id: int) -> dict[str, Any] | None:
    locked = User.objects.select_for_update().filter(pk=user_id).first()
    if locked is None:
        return None
    total = LedgerEntry.objects.filter(user_id=user_id).aggregate(total=Sum("amount"))["total"] or 0
    if locked.balance == total:
        return None  # a write was in flight when the sums were read
    User.objects.filter(pk=user_id).update(balance=total)
    return {
        "user_id": user_id,
        "username": locked.username,
        "balance": locked.balance,
        "ledger_sum": total,
        "drift": locked.balance - total,
    }


def _resync_mirrors(now: datetime, stale_hold_seconds: int) -> _MirrorFindings:
    """Release stale holds by dropping the Redis mirrors that hold them.

    A hold exists only as a decrement of the user's mirror, so one left by a
    killed relay process looks exactly like one in flight. A mirror is dropped
    (and re-seeded from the database by the relay's next hold) when it
    differs from the user's database balance, nothing of that user is on the
    usage stream, and it has read exactly the same — mirror and balance — at
    runs at least ``stale_hold_seconds`` apart: every hold, settlement and
    credit moves the mirror, so that user had no request in that time and
    whatever the mirror still holds is stale. The drop is a compare-and-delete
    on the value seen, so a request that starts meanwhile keeps its hold.
    Dropping the user's tokens' ``used`` mirrors goes with it (their holds
    are the same holds). A user who is never idle that long keeps a leaked
    hold until they are; the error is always on the safe side (too little
    spendable, never too much).
    """
    from billing import mirror

    found = _MirrorFindings()
    client = mirror.client()
    mirrors = mirror.balances()
    queued = mirror.queued_user_ids()
    balances = dict(User.objects.filter(pk__in=list(mirrors)).values_list("pk", "balance"))
    # redis-py types the replies of its sync and async clients as one union.
    stored: dict[bytes, bytes] = client.hgetall(mirror.names().reconcile_suspects)  # type: ignore[assignment]
    suspects = {int(k): v.decode() for k, v in stored.items()}
    still: dict[int, str] = {}
    stamp = int(now.timestamp())
    for user_id, value in mirrors.items():
        found.checked += 1
        if user_id in queued:
            found.pending += 1
            continue
        balance = balances.get(user_id)
        if balance is None:  # the user is gone
            mirror.release(user_id, value, [])
            continue
        if value == balance:
            continue
        seen = suspects.get(user_id, "")
        parts = seen.split(":")
        if len(parts) == 3 and parts[:2] == [str(value), str(balance)]:
            if stamp - int(parts[2]) >= stale_hold_seconds:
                tokens = list(Token.objects.filter(user_id=user_id).values_list("pk", flat=True))
                if mirror.release(user_id, value, tokens):
                    found.released.append({"user_id": user_id, "mirror": value, "balance": balance})
                continue
            still[user_id] = seen
        else:
            still[user_id] = f"{value}:{balance}:{stamp}"
    pipe = client.pipeline()
    pipe.delete(mirror.names().reconcile_suspects)
    if still:
        pipe.hset(mirror.names().reconcile_suspects, mapping={str(k): v for k, v in still.items()})
    pipe.execute()
    if found.released:
        log.warning("released the stale holds of %d user(s) by dropping their balance mirrors", len(found.released))
    return found


def prune_usage_logs(
    *,
    days: int | None = None,
    now: datetime | None = None,
    batch: int = PRUNE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the raw usage rows older than ``days`` (default:
    ONEPROXY_USAGE_RETENTION_DAYS); returns how many. What stays is the
    evidence: the rollups (settled with the rows, in the same transaction)
    and the ledger's charges, one per settlement batch and user. Rows not
    rolled up yet (settled before rollups existed; backfill_history rolls
    them up) are kept until they are.

    The cutoff is a whole hour, recorded first (``HistoryState``), so totals
    never read a half-pruned hour from raw rows. Rows are deleted by id in
    batches of at most ``batch`` (≤ 5,000), one short transaction each, so
    the table is never locked long; ``progress`` is called with the running
    count. On PostgreSQL a plain VACUUM of the table follows (it blocks no
    reads or writes), so the space is reused at once rather than when
    autovacuum's threshold of dead rows is reached.
    """
    days = settings.ONEPROXY_USAGE_RETENTION_DAYS if days is None else days
    if days < 1:
        raise ValueError("retention must be at least one day")
    batch = min(batch, PRUNE_BATCH)
    cutoff = ((now or timezone.now()) - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    with transaction.atomic():
        state, _ = HistoryState.objects.select_for_update().get_or_create(pk=1)
        if state.pruned_before is None or state.pruned_before < cutoff:
            state.pruned_before = cutoff
            state.save(update_fields=["pruned_before"])
    candidates = UsageLog.objects.filter(created_at__lt=cutoff, batch__isnull=False)
    deleted = 0
    while True:
        ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            break
        with transaction.atomic():
            count, _ = UsageLog.objects.filter(pk__in=ids).delete()
        deleted += count
        if progress is not None:
            progress(deleted)
        if len(ids) < batch:
            break
    _forget_old_counters(cutoff)
    if deleted and connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM {UsageLog._meta.db_table}")
    return deleted


def _forget_old_counters(cutoff: datetime) -> None:
    """Budget counters of periods that ended before ``cutoff``: enforcement
    reads only current periods, and the rollups keep what they counted.
    Never a current period's (a cutoff given in the future)."""
    from relay.periods import period_bounds

    now = time.time()
    for period in BudgetPeriod.values:
        # The start of the period that contains the cutoff: earlier ones have ended.
        start = min(period_bounds(period, cutoff.timestamp())[0], period_bounds(period, now)[0])
        BudgetSpend.objects.filter(period=period, start__lt=datetime.fromtimestamp(start, UTC)).delete()


BACKFILL_CHUNK = 5_000


def history_to_backfill() -> bool:
    """Are there usage rows settled before rollups existed, not rolled up yet?"""
    return UsageLog.objects.filter(batch__isnull=True).exists()


def backfill_history(*, chunk: int = BACKFILL_CHUNK, progress: Callable[[int, int], None] | None = None) -> int:
    """Roll up the usage rows settled before rollups existed (an upgraded
    database); returns how many. Each chunk, in one transaction: its rows
    get their team (the user's team now: the best there is for them) and a
    settlement batch marked ``backfill`` (their charges stay the per-request
    entries they have), and are added to the rollups and budget counters.
    Resumable and idempotent: a row with a batch is never counted again, and
    an interrupted run leaves whole chunks done. ``progress(done, total)``
    after each chunk."""
    pending = UsageLog.objects.filter(batch__isnull=True)
    total = pending.count()
    done = 0
    while True:
        with transaction.atomic():
            # One back-fill at a time: two would count the same rows.
            HistoryState.objects.get_or_create(pk=1)
            HistoryState.objects.select_for_update().get(pk=1)
            rows = list(
                pending.order_by("pk").values_list(
                    "pk", "created_at", "user_id", "user__team_id", "token_id", "model", "channel_id", "key_id",
                    "prompt_tokens", "completion_tokens", "cached_tokens", "cost", "status", "latency_ms",
                )[:chunk]
            )  # fmt: skip
            if not rows:
                return done
            now = timezone.now()
            batch = SettlementBatch.objects.create(
                created_at=now, requests=len(rows), cost=sum(row[11] for row in rows), backfill=True
            )
            by_team: dict[int | None, list[int]] = {}
            for row in rows:
                by_team.setdefault(row[3], []).append(row[0])
            for team_id, ids in by_team.items():
                UsageLog.objects.filter(pk__in=ids).update(batch=batch, team_id=team_id)
            rollups.add([(row[1].timestamp(), *row[2:]) for row in rows])
        done += len(rows)
        if progress is not None:
            progress(done, max(total, done))
