"""Turns the relay's usage events into UsageLog rows and ledger charges."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from billing import rollups
from billing.bulk import insert_many, insert_returning_id, select_in
from billing.models import LedgerEntry, SettlementBatch, Token, UsageLog, User
from relay.ports import TEAM_OF_USER, Settled, UsageEvent


@transaction.atomic
def apply_usage(events: list[UsageEvent]) -> Settled:
    """Write a batch in one transaction: the usage rows, one charge per user
    (the sum of their batch, pointing at it), balances, token spending, and
    the rollups and budget counters that count the rows (billing/rollups.py).
    Idempotent: an event whose request id is already logged is skipped, so a
    redelivered event is charged once.

    Plain ``executemany`` statements rather than ORM model instances
    (billing/bulk.py): this runs for every request.
    """
    if not events:
        return Settled()
    # Lock the users first, in a fixed order, so concurrent writers cannot
    # deadlock and a writer that waited sees what the other one wrote.
    user_ids = sorted({e.user_id for e in events})
    balances = select_in(User, "id", "balance", user_ids, lock=True)
    seen = select_in(UsageLog, "request_id", "id", [e.request_id for e in events])
    fresh: dict[str, UsageEvent] = {}
    for event in events:
        if event.request_id not in seen:
            fresh.setdefault(event.request_id, event)
    if not fresh:
        return Settled()
    if any(e.team_id == TEAM_OF_USER for e in fresh.values()):
        teams = select_in(User, "id", "team_id", user_ids)
        for event in fresh.values():
            if event.team_id == TEAM_OF_USER:
                event.team_id = teams.get(event.user_id)
    now = datetime.now(UTC)
    charged: dict[int, list[int]] = {}  # user → [µUSD, requests]
    spent_by_token: dict[int, int] = {}
    for event in fresh.values():
        if not event.cost:
            continue
        charge = charged.setdefault(event.user_id, [0, 0])
        charge[0] += event.cost
        charge[1] += 1
        if event.token_id is not None:
            spent_by_token[event.token_id] = spent_by_token.get(event.token_id, 0) + event.cost
    total = sum(cost for cost, _ in charged.values())
    batch = insert_returning_id(SettlementBatch, _BATCH_FIELDS, (now, len(fresh), total, False))
    insert_many(UsageLog, _LOG_FIELDS, [_log_values(e, batch) for e in fresh.values()])
    entries = []
    for user_id, (cost, count) in sorted(charged.items()):
        balances[user_id] -= cost
        note = f"{count} request{'s' if count > 1 else ''} (batch #{batch})"
        # A plain str kind: sqlite3 binds no str subclass.
        entries.append((user_id, LedgerEntry.Kind.CHARGE.value, -cost, balances[user_id], batch, note, now))
    insert_many(LedgerEntry, _ENTRY_FIELDS, entries)
    with connection.cursor() as cursor:
        if charged:
            cursor.executemany(
                f"UPDATE {User._meta.db_table} SET balance = %s WHERE id = %s",
                [(balances[user_id], user_id) for user_id in sorted(charged)],
            )
        if spent_by_token:
            last_used = Token._meta.get_field("last_used_at").get_db_prep_value(now, connection)
            cursor.executemany(
                f"UPDATE {Token._meta.db_table} SET used = used + %s, last_used_at = %s WHERE id = %s",
                [(spent, last_used, token_id) for token_id, spent in spent_by_token.items()],
            )
    rollups.add([_rollup_values(e) for e in fresh.values()])
    token_used = select_in(Token, "id", "used", list(spent_by_token))
    return Settled(balances=balances, token_used=token_used)


_BATCH_FIELDS = ("created_at", "requests", "cost", "backfill")
_LOG_FIELDS = (
    "request_id",
    "created_at",
    "user",
    "team",
    "token",
    "batch",
    "endpoint",
    "model",
    "upstream_model",
    "channel",
    "key",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "estimated",
    "cost",
    "held",
    "written_off",
    "group_multiplier",
    "team_multiplier",
    "attempts",
    "status",
    "latency_ms",
    "stream",
    "error",
)
_ENTRY_FIELDS = ("user", "kind", "amount", "balance_after", "batch", "note", "created_at")


@functools.lru_cache(maxsize=256)
def _decimal(text: str) -> Decimal:
    return Decimal(text)


def current_balances(user_ids: list[int], token_ids: list[int]) -> Settled:
    return Settled(
        balances=dict(User.objects.filter(pk__in=user_ids).values_list("pk", "balance")),
        token_used=dict(Token.objects.filter(pk__in=token_ids).values_list("pk", "used")),
    )


def _log_values(e: UsageEvent, batch: int) -> tuple:  # type: ignore[type-arg]
    """A usage row's values, in the order of _LOG_FIELDS."""
    return (
        e.request_id,
        datetime.fromtimestamp(e.created_at, UTC),
        e.user_id,
        e.team_id,
        e.token_id,
        batch,
        e.endpoint,
        e.model[:128],
        e.upstream_model[:128],
        e.channel_id,
        e.key_id,
        e.usage.prompt_tokens,
        e.usage.completion_tokens,
        e.usage.cached_tokens,
        e.usage.cache_write_tokens,
        e.usage.estimated,
        e.cost,
        e.held,
        e.written_off,
        _decimal(e.group_multiplier),
        _decimal(e.team_multiplier),
        e.attempts,
        e.status,
        e.latency_ms,
        e.stream,
        e.error,
    )


def _rollup_values(e: UsageEvent) -> rollups.Request:
    usage = e.usage
    return (
        e.created_at, e.user_id, e.team_id, e.token_id, e.model[:128], e.channel_id, e.key_id,
        usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, e.cost, e.status, e.latency_ms,
    )  # fmt: skip


def journal_dir() -> Path:
    """Where embedded mode's relay journals usage (relay/journal.py): beside
    the database it is settled into, so each database has its own."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        path = Path(db["NAME"])
        return path.with_name(path.name + "-usage")
    return settings.DATA_DIR / f"usage-{db.get('HOST') or 'local'}-{db.get('PORT') or ''}-{db['NAME']}"
