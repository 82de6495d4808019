"""Turns the relay's usage events into UsageLog rows and ledger charges."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, DecimalField, Field

from billing.models import LedgerEntry, Token, UsageLog, User
from relay.ports import Settled, UsageEvent


@transaction.atomic
def apply_usage(events: list[UsageEvent]) -> Settled:
    """Write a batch in one transaction. Idempotent: an event whose request id
    is already logged is skipped, so a redelivered event is charged once.

    Plain ``executemany`` INSERTs and UPDATEs rather than ORM model instances:
    this runs for every request, and building model objects was measured as
    the largest single cost of the relay process (docs/BENCHMARKS.md).
    """
    seen = _select_in(UsageLog, "request_id", "id", [e.request_id for e in events])
    fresh: dict[str, UsageEvent] = {}
    for event in events:
        if event.request_id not in seen:
            fresh.setdefault(event.request_id, event)
    if not fresh:
        return Settled()
    _insert_many(UsageLog, _LOG_FIELDS, [_log_values(e) for e in fresh.values()])
    usage_ids = _select_in(UsageLog, "request_id", "id", list(fresh))
    user_ids = sorted({e.user_id for e in fresh.values()})
    # Lock the users in a fixed order so concurrent writers cannot deadlock.
    balances = _select_in(User, "id", "balance", user_ids, lock=True)
    entries = []
    spent_by_token: dict[int, int] = {}
    now = datetime.now(UTC)
    for event in fresh.values():
        if not event.cost:
            continue
        if event.token_id is not None:
            spent_by_token[event.token_id] = spent_by_token.get(event.token_id, 0) + event.cost
        balances[event.user_id] -= event.cost
        entries.append(
            (
                event.user_id,
                LedgerEntry.Kind.CHARGE.value,  # a plain str: sqlite3 binds no str subclass
                -event.cost,
                balances[event.user_id],
                usage_ids[event.request_id],
                event.model[:255],
                now,
            )
        )
    _insert_many(LedgerEntry, _ENTRY_FIELDS, entries)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {User._meta.db_table} SET balance = %s WHERE id = %s",
            [(balances[user_id], user_id) for user_id in user_ids],
        )
        if spent_by_token:
            last_used = Token._meta.get_field("last_used_at").get_db_prep_value(now, connection)
            cursor.executemany(
                f"UPDATE {Token._meta.db_table} SET used = used + %s, last_used_at = %s WHERE id = %s",
                [(spent, last_used, token_id) for token_id, spent in spent_by_token.items()],
            )
    token_used = _select_in(Token, "id", "used", list(spent_by_token))
    return Settled(balances=balances, token_used=token_used)


def _select_in(model, key: str, value: str, keys: list, lock: bool = False) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """``key`` → ``value`` of the rows whose ``key`` is one of ``keys``. Plain
    SQL: the ORM compiled a query per call (~1 ms of CPU a batch, more than
    the rest of a small one) and prepared each of up to thousands of IN
    parameters on its own. ``lock``: FOR UPDATE, in ``key`` order, where the
    database has it."""
    if not keys:
        return {}
    placeholders = ", ".join(["%s"] * len(keys))
    tail = f" ORDER BY {key} FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {key}, {value} FROM {model._meta.db_table} WHERE {key} IN ({placeholders}){tail}", keys)
        return dict(cursor.fetchall())


_LOG_FIELDS = (
    "request_id",
    "created_at",
    "user",
    "token",
    "endpoint",
    "model",
    "upstream_model",
    "channel",
    "key",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
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
_ENTRY_FIELDS = ("user", "kind", "amount", "balance_after", "usage", "note", "created_at")


def _insert_many(model, names: tuple[str, ...], rows: list[tuple]) -> None:  # type: ignore[no-untyped-def,type-arg]
    """One INSERT statement run for every row. Only datetimes and decimals
    need the backend's adaptation; ints, strings and booleans go as they are
    (asking every field to prepare every value was itself a hot spot)."""
    if not rows:
        return
    sql, converting = _insert_statement(model, names, connection.vendor)
    prepared = []
    for row in rows:
        values = list(row)
        for i, convert in converting:
            if values[i] is not None:
                values[i] = convert(values[i])
        prepared.append(values)
    with connection.cursor() as cursor:
        cursor.executemany(sql, prepared)


@functools.lru_cache(maxsize=8)
def _insert_statement(model, names: tuple[str, ...], vendor: str) -> tuple[str, list]:  # type: ignore[no-untyped-def,type-arg]
    """The INSERT for these fields and the converters of the columns that need one."""
    fields = [model._meta.get_field(name) for name in names]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    adapt = [_adapter(f) for f in fields]
    converting = [(i, a) for i, a in enumerate(adapt) if a is not None]
    return f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({placeholders})", converting


def _adapter(field: Field[Any, Any]) -> Callable[[Any], Any] | None:
    ops = connection.ops
    if isinstance(field, DateTimeField):
        # SQLite stores naive UTC text; the relay's datetimes are UTC already,
        # so this is what Django's adapter returns, without its checks per row.
        return _sqlite_datetime if connection.vendor == "sqlite" else ops.adapt_datetimefield_value
    if isinstance(field, DecimalField):
        return lambda v: ops.adapt_decimalfield_value(v, field.max_digits, field.decimal_places)
    return None


def _sqlite_datetime(value: datetime) -> str:
    return str(value.astimezone(UTC).replace(tzinfo=None))


@functools.lru_cache(maxsize=256)
def _decimal(text: str) -> Decimal:
    return Decimal(text)


def current_balances(user_ids: list[int], token_ids: list[int]) -> Settled:
    return Settled(
        balances=dict(User.objects.filter(pk__in=user_ids).values_list("pk", "balance")),
        token_used=dict(Token.objects.filter(pk__in=token_ids).values_list("pk", "used")),
    )


def _log_values(e: UsageEvent) -> tuple:  # type: ignore[type-arg]
    """A usage row's values, in the order of _LOG_FIELDS."""
    return (
        e.request_id,
        datetime.fromtimestamp(e.created_at, UTC),
        e.user_id,
        e.token_id,
        e.endpoint,
        e.model[:128],
        e.upstream_model[:128],
        e.channel_id,
        e.key_id,
        e.usage.prompt_tokens,
        e.usage.completion_tokens,
        e.usage.cached_tokens,
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


def journal_dir() -> Path:
    """Where embedded mode's relay journals usage (relay/journal.py): beside
    the database it is settled into, so each database has its own."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        path = Path(db["NAME"])
        return path.with_name(path.name + "-usage")
    return settings.DATA_DIR / f"usage-{db.get('HOST') or 'local'}-{db.get('PORT') or ''}-{db['NAME']}"
