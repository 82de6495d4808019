"""Rollups and budget counters, moved as usage settles.

``add`` runs in the transaction that writes the usage rows and their charges
(billing/usage_sink.apply_usage), so rollups and counters always equal the
rows they count; ``backfill_history`` calls it for rows settled before
rollups existed. A batch is aggregated in Python first, then written with one
executemany UPSERT per table (INSERT … ON CONFLICT … DO UPDATE, the same on
SQLite and PostgreSQL): a batch of a thousand requests of one token, model
and key is two rollup rows (its hour and its day) and six counter rows.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from billing.bulk import db_datetime, db_epoch
from billing.models import LATENCY_BOUNDS_MS, LATENCY_BUCKETS, BudgetSpend, LedgerEntry, UsageLog, UsageRollup, User
from relay.periods import PERIODS, period_bounds

HOUR = 3_600
DAY = 86_400
# A rollup row's measures, in this order.
MEASURES = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "latency_ms",
    *LATENCY_BUCKETS,
)
_FIRST_BUCKET = MEASURES.index(LATENCY_BUCKETS[0])
DIMENSIONS = ("user_id", "team_id", "token_id", "model", "channel_id", "key_id")

# One settled request: created_at (epoch seconds), user, team, token, model,
# channel, key, prompt / completion / cached tokens, cost (µUSD), status, latency (ms).
Request = tuple[float, int, int | None, int | None, str, int | None, int | None, int, int, int, int, int, int]
Dims = tuple[int, int | None, int | None, str, int | None, int | None]


def add(requests: Iterable[Request]) -> None:
    """Count ``requests`` in the rollups of their hour and day and in the
    budget counters of their user and team. Call inside the transaction that
    writes the requests' usage rows."""
    hours: dict[tuple[int, Dims], list[int]] = {}
    spent: dict[tuple[int, int | None, int], int] = {}  # (user, team, day) → µUSD
    width = len(MEASURES)
    for at, user, team, token, model, channel, key, prompt, completion, cached, cost, status, latency in requests:
        second = int(at)
        hour = second - second % HOUR
        bucket = (hour, (user, team, token, model, channel, key))
        m = hours.get(bucket)
        if m is None:
            m = hours[bucket] = [0] * width
        m[0] += 1
        if status >= 400:
            m[1] += 1
        m[2] += prompt
        m[3] += completion
        m[4] += cached
        m[5] += cost
        m[6] += latency
        m[_FIRST_BUCKET + bisect_left(LATENCY_BOUNDS_MS, latency)] += 1
        if cost:
            day = (user, team, hour - hour % DAY)
            spent[day] = spent.get(day, 0) + cost
    days: dict[tuple[int, Dims], list[int]] = {}
    for (hour, dims), m in hours.items():
        day_bucket = (hour - hour % DAY, dims)
        total = days.get(day_bucket)
        if total is None:
            days[day_bucket] = list(m)
        else:
            for i, value in enumerate(m):
                total[i] += value
    rows = [
        (span, db_epoch(start), *dims, *m)
        for span, buckets in ((UsageRollup.Span.HOUR.value, hours), (UsageRollup.Span.DAY.value, days))
        for (start, dims), m in buckets.items()
    ]
    with connection.cursor() as cursor:
        if rows:
            cursor.executemany(_rollup_upsert(connection.vendor), rows)
        counters = _counter_rows(spent)
        if counters:
            cursor.executemany(_counter_upsert(connection.vendor), counters)


def _counter_rows(spent: dict[tuple[int, int | None, int], int]) -> list[tuple[Any, ...]]:
    """Every period (day, ISO week, month) of every user and team charged;
    sorted, so that concurrent settlements take a team's rows in one order."""
    rows: dict[tuple[str, int, str, int], int] = {}
    for (user, team, day), cost in spent.items():
        for period, start in zip(PERIODS, period_starts(day), strict=True):
            key = ("user", user, period, start)
            rows[key] = rows.get(key, 0) + cost
            if team is not None:
                key = ("team", team, period, start)
                rows[key] = rows.get(key, 0) + cost
    return [
        (subject, sid, period, db_epoch(start), cost) for (subject, sid, period, start), cost in sorted(rows.items())
    ]


@functools.lru_cache(maxsize=1024)
def period_starts(day: int) -> tuple[int, ...]:
    """The starts (epoch seconds) of the day, ISO week and month containing ``day``."""
    return tuple(int(period_bounds(period, day)[0]) for period in PERIODS)


# Absent dimensions are 0 in the unique index (models.UsageRollup), so the
# conflict target names them the same way.
ROLLUP_CONFLICT = (
    "span, start, user_id, COALESCE(team_id, 0), COALESCE(token_id, 0), model, "
    "COALESCE(channel_id, 0), COALESCE(key_id, 0)"
)


@functools.lru_cache(maxsize=2)
def _rollup_upsert(vendor: str) -> str:
    table = UsageRollup._meta.db_table
    columns = ("span", "start", *DIMENSIONS, *MEASURES)
    adds = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in MEASURES)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({ROLLUP_CONFLICT}) DO UPDATE SET {adds}"
    )


@functools.lru_cache(maxsize=2)
def _counter_upsert(vendor: str) -> str:
    table = BudgetSpend._meta.db_table
    return (
        f"INSERT INTO {table} (subject, subject_id, period, start, spent) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT (subject, subject_id, period, start) DO UPDATE SET spent = {table}.spent + excluded.spent"
    )


# -- checks (billing.reconcile) ---------------------------------------------------
#
# Each check is one SQL statement, so it reads one consistent snapshot (on
# PostgreSQL a statement's, on SQLite its read transaction's): settlement
# moves the rows, charges, rollups and counters it compares in one
# transaction, so any difference found is real, never a race.


def _raw_measure(name: str) -> str:
    """A raw usage row's contribution to a rollup measure, in SQL."""
    if name == "requests":
        return "1"
    if name == "errors":
        return "CASE WHEN status >= 400 THEN 1 ELSE 0 END"
    if name in LATENCY_BUCKETS:
        i = LATENCY_BUCKETS.index(name)
        low = f"latency_ms > {LATENCY_BOUNDS_MS[i - 1]}" if i else "1 = 1"
        high = f" AND latency_ms <= {LATENCY_BOUNDS_MS[i]}" if i < len(LATENCY_BOUNDS_MS) else ""
        return f"CASE WHEN {low}{high} THEN 1 ELSE 0 END"
    return name


def _compare(left: str, right: str, params: list[Any]) -> list[tuple[int, list[int], list[int]]]:
    """Per user: the measures of ``left`` and of ``right`` (two SELECTs of
    user_id and MEASURES) where they differ."""
    n = len(MEASURES)
    left_columns = [f"{m} AS a{i}" for i, m in enumerate(MEASURES)] + [f"0 AS b{i}" for i in range(n)]
    right_columns = [f"0 AS a{i}" for i in range(n)] + [f"{m} AS b{i}" for i, m in enumerate(MEASURES)]
    sums = ", ".join([f"SUM(a{i})" for i in range(n)] + [f"SUM(b{i})" for i in range(n)])
    differs = " OR ".join(f"SUM(a{i}) <> SUM(b{i})" for i in range(n))
    sql = (
        f"SELECT user_id, {sums} FROM ("
        f"SELECT user_id, {', '.join(left_columns)} FROM ({left}) l "
        f"UNION ALL SELECT user_id, {', '.join(right_columns)} FROM ({right}) r"
        f") both_sides GROUP BY user_id HAVING {differs} ORDER BY user_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        # PostgreSQL sums bigints as numeric: back to ints.
        return [
            (int(row[0]), [int(v) for v in row[1 : n + 1]], [int(v) for v in row[n + 1 :]]) for row in cursor.fetchall()
        ]


def hour_drift(hour: datetime) -> list[dict[str, Any]]:
    """Users whose hour rollups of ``hour`` differ from the raw rows of that
    hour (rows not yet back-filled are in no rollup, so they are left out)."""
    rollups = UsageRollup._meta.db_table
    raw = ", ".join(f"{_raw_measure(m)} AS {m}" for m in MEASURES)
    left = f"SELECT user_id, {', '.join(MEASURES)} FROM {rollups} WHERE span = %s AND start = %s"
    right = (
        f"SELECT user_id, {raw} FROM {UsageLog._meta.db_table} "
        "WHERE created_at >= %s AND created_at < %s AND batch_id IS NOT NULL"
    )
    start = db_datetime(hour)
    end = db_datetime(hour + _ONE_HOUR)
    found = _compare(left, right, [UsageRollup.Span.HOUR.value, start, start, end])
    return [_drift("hour", hour, user, rolled, counted) for user, rolled, counted in found]


def day_drift(day: datetime) -> list[dict[str, Any]]:
    """Users whose day rollup of ``day`` differs from the sum of its hours."""
    rollups = UsageRollup._meta.db_table
    left = f"SELECT user_id, {', '.join(MEASURES)} FROM {rollups} WHERE span = %s AND start = %s"
    right = f"SELECT user_id, {', '.join(MEASURES)} FROM {rollups} WHERE span = %s AND start >= %s AND start < %s"
    start = db_datetime(day)
    params: list[Any] = [UsageRollup.Span.DAY.value, start, UsageRollup.Span.HOUR.value, start]
    found = _compare(left, right, [*params, db_datetime(day + _ONE_DAY)])
    return [_drift("day", day, user, rolled, counted) for user, rolled, counted in found]


def _drift(span: str, start: datetime, user: int, rolled: list[int], counted: list[int]) -> dict[str, Any]:
    return {
        "span": span,
        "start": start.isoformat(),
        "user_id": user,
        "rollups": dict(zip(MEASURES, rolled, strict=True)),
        "counted": dict(zip(MEASURES, counted, strict=True)),
    }


def usage_drift() -> list[tuple[int, int, int]]:
    """(user, charged, settled) in µUSD for every user whose charges in the
    ledger differ from their settled usage: the day rollups, plus usage rows
    settled before rollups existed that backfill_history has not reached
    (their charges are in the ledger already)."""
    sql = (
        "SELECT u.id, COALESCE(c.charged, 0), COALESCE(r.settled, 0) + COALESCE(l.settled, 0) "
        f"FROM {User._meta.db_table} u "
        f"LEFT JOIN (SELECT user_id, -SUM(amount) AS charged FROM {LedgerEntry._meta.db_table} "
        "WHERE kind = %s GROUP BY user_id) c ON c.user_id = u.id "
        f"LEFT JOIN (SELECT user_id, SUM(cost) AS settled FROM {UsageRollup._meta.db_table} "
        "WHERE span = %s GROUP BY user_id) r ON r.user_id = u.id "
        f"LEFT JOIN (SELECT user_id, SUM(cost) AS settled FROM {UsageLog._meta.db_table} "
        "WHERE batch_id IS NULL GROUP BY user_id) l ON l.user_id = u.id "
        "WHERE COALESCE(c.charged, 0) <> COALESCE(r.settled, 0) + COALESCE(l.settled, 0) ORDER BY u.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [LedgerEntry.Kind.CHARGE.value, UsageRollup.Span.DAY.value])
        return [(int(a), int(b), int(c)) for a, b, c in cursor.fetchall()]


def counter_drift(subject: str, period: str, start: datetime, end: datetime) -> list[tuple[int, int, int]]:
    """(subject id, counter, rollups) in µUSD for the users or teams whose
    budget counter of the period [start, end) differs from the day rollups
    charged to them in it."""
    column = "user_id" if subject == BudgetSpend.Subject.USER else "team_id"
    sql = (
        f"SELECT sid, SUM(a), SUM(b) FROM ("
        f"SELECT subject_id AS sid, spent AS a, 0 AS b FROM {BudgetSpend._meta.db_table} "
        "WHERE subject = %s AND period = %s AND start = %s "
        f"UNION ALL SELECT {column} AS sid, 0 AS a, cost AS b FROM {UsageRollup._meta.db_table} "
        f"WHERE span = %s AND start >= %s AND start < %s AND {column} IS NOT NULL"
        ") both_sides GROUP BY sid HAVING SUM(a) <> SUM(b) ORDER BY sid"
    )
    params = [subject, period, db_datetime(start), UsageRollup.Span.DAY.value, db_datetime(start), db_datetime(end)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(int(a), int(b), int(c)) for a, b, c in cursor.fetchall()]


def move_counter(subject: str, subject_id: int, period: str, start: datetime, delta: int) -> None:
    """Add ``delta`` µUSD to a budget counter (reconcile's correction: a
    delta, so settlement moving it meanwhile is kept)."""
    with connection.cursor() as cursor:
        cursor.execute(_counter_upsert(connection.vendor), [subject, subject_id, period, db_datetime(start), delta])


_ONE_HOUR = timedelta(hours=1)
_ONE_DAY = timedelta(days=1)
