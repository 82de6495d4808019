"""Billing's business verbs: users, tokens, top-ups, adjustments, redemption
codes, and the scheduled upkeep (settlement, reconciliation, retention).

Money moves only here, inside ``transaction.atomic()`` with a row lock on the
user, so the balance column always equals the sum of the ledger.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing.models import Group, LedgerEntry, ReconcileReport, RedemptionCode, Team, Token, UsageLog, User
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
    """A used token is disabled and hidden so usage history keeps pointing at it."""
    if token.usage.exists():
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
    it in a ReconcileReport.

    1. Each user's balance column is compared with the sum of their ledger;
       a difference is re-checked under the user's row lock and the column is
       set to the sum (the ledger is the truth; no entry is written).
    2. Usage rows with a cost but no charge, and charges that differ from
       their usage row's cost, are counted (never expected; not auto-fixed).
    3. Service mode: holds older than ``stale_hold_seconds`` that never
       settled (their relay process died) are given back exactly, from the
       relay's hold registry; then mirrors that still disagree with the
       database are re-synced — see ``_resync_mirrors``.
    """
    now = now or timezone.now()
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
    report.unbilled_usage = UsageLog.objects.filter(cost__gt=0, ledger_entry__isnull=True).count()
    report.mismatched_charges = (
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE, usage__isnull=False)
        .exclude(amount=-F("usage__cost"))
        .count()
    )
    if settings.REDIS_URL:
        from billing import mirror

        report.stale_holds_released = mirror.release_stale_holds(stale_hold_seconds, now.timestamp())
        found = _resync_mirrors(now, stale_hold_seconds)
        report.mirrors_checked, report.mirrors_pending = found.checked, found.pending
        report.mirrors_released = found.released
    report.save()
    if drift:
        bump_config_version()  # embedded relays reload the corrected balances
        log.warning(
            "reconcile #%s: %d balance(s) differed from their ledger and were fixed: %s",
            report.pk,
            len(drift),
            ", ".join(f"user {d['user_id']} {to_usd(d['drift'])} USD" for d in drift[:20]),
        )
    if report.unbilled_usage or report.mismatched_charges:
        log.error(
            "reconcile #%s: %d usage row(s) without a charge, %d charge(s) unlike their usage cost",
            report.pk,
            report.unbilled_usage,
            report.mismatched_charges,
        )
    return report


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


def prune_usage_logs(*, days: int = 90, now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete usage rows older than ``days`` that no ledger entry points at;
    returns how many. Rows are deleted by id in batches of at most ``batch``
    (≤ 5,000), one short transaction each, so the table is never locked long.

    Charged rows (cost > 0) are kept: each is the evidence of a ledger charge
    (the ledger links to it and is append-only), and reconciliation proves
    balance = ledger = settled usage from them. What goes is the rest: errors
    before any output, refunded and free (local-model) requests.
    """
    if days < 1:
        raise ValueError("retention must be at least one day")
    batch = min(batch, PRUNE_BATCH)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    candidates = UsageLog.objects.filter(created_at__lt=cutoff, ledger_entry__isnull=True)
    deleted = 0
    while True:
        ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        with transaction.atomic():
            # Re-filtered inside the transaction: a row linked meanwhile stays.
            count, _ = UsageLog.objects.filter(pk__in=ids, ledger_entry__isnull=True).delete()
        deleted += count
        if len(ids) < batch:
            return deleted
