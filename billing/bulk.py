"""Plain-SQL helpers for the settlement path: many rows per statement, values
adapted once. The ORM compiled a query per call (~1 ms of CPU a batch, more
than the rest of a small one) and prepared each value through its field, and
building model instances was measured as the largest single cost of the
relay process (docs/BENCHMARKS.md)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import DateTimeField, DecimalField, Field, Model


def select_in(model: type[Model], key: str, value: str, keys: Sequence[Any], lock: bool = False) -> dict[Any, Any]:
    """``key`` → ``value`` of the rows whose ``key`` is one of ``keys``.
    ``lock``: FOR UPDATE, in ``key`` order, where the database has it."""
    if not keys:
        return {}
    placeholders = ", ".join(["%s"] * len(keys))
    tail = f" ORDER BY {key} FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {key}, {value} FROM {model._meta.db_table} WHERE {key} IN ({placeholders}){tail}", keys)
        return dict(cursor.fetchall())


def insert_many(model: type[Model], names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
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


def insert_returning_id(model: type[Model], names: tuple[str, ...], row: tuple[Any, ...]) -> int:
    """INSERT one row; its new primary key."""
    sql, converting = _insert_statement(model, names, connection.vendor)
    values = list(row)
    for i, convert in converting:
        if values[i] is not None:
            values[i] = convert(values[i])
    with connection.cursor() as cursor:
        if connection.features.can_return_columns_from_insert:
            cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(model._meta.pk.column)}", values)
            return int(cursor.fetchone()[0])
        cursor.execute(sql, values)
        return int(cursor.lastrowid)


@functools.lru_cache(maxsize=16)
def _insert_statement(
    model: type[Model], names: tuple[str, ...], vendor: str
) -> tuple[str, list[tuple[int, Callable[[Any], Any]]]]:
    """The INSERT for these fields and the converters of the columns that need one."""
    fields = [model._meta.get_field(name) for name in names]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)  # type: ignore[union-attr]
    placeholders = ", ".join(["%s"] * len(fields))
    adapt = [_adapter(f) for f in fields]  # type: ignore[arg-type]
    converting = [(i, a) for i, a in enumerate(adapt) if a is not None]
    return f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({placeholders})", converting


def _adapter(field: Field[Any, Any]) -> Callable[[Any], Any] | None:
    ops = connection.ops
    if isinstance(field, DateTimeField):
        return _sqlite_datetime if connection.vendor == "sqlite" else ops.adapt_datetimefield_value
    if isinstance(field, DecimalField):
        return lambda v: ops.adapt_decimalfield_value(v, field.max_digits, field.decimal_places)
    return None


def _sqlite_datetime(value: datetime) -> str:
    # SQLite keeps naive UTC text: what Django's adapter returns, without its checks per row.
    return str(value.astimezone(UTC).replace(tzinfo=None))


def db_datetime(value: datetime) -> Any:
    """An aware datetime as the backend stores it."""
    if connection.vendor == "sqlite":
        return _sqlite_datetime(value)
    return connection.ops.adapt_datetimefield_value(value)


@functools.lru_cache(maxsize=4096)
def db_epoch(seconds: int) -> Any:
    """A whole UTC second (an hour's or a day's start) as the backend stores it."""
    return db_datetime(datetime.fromtimestamp(seconds, UTC))
