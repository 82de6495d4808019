"""Usage totals and charts, read from the rollups (billing/rollups.py).

Their cost grows with the combinations of user, token, model and key used
per hour, not with the number of requests. A window [since, until) is read
as whole UTC days from the day rollups, whole hours at its edges from the
hour rollups and, where ``since`` or ``until`` falls inside an hour, that
part of the hour from the raw usage rows. Raw rows older than the retention
are pruned (``HistoryState.pruned_before``): an edge before that is rounded
down to its hour, and the answer's ``since`` / ``until`` say which window
was read. ``summary`` answers /api/usage/summary/ and the admin's totals;
``series`` is the dashboard's main query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import BigIntegerField, Count, Q, QuerySet, Sum
from django.db.models.functions import Cast

from billing.models import LATENCY_BOUNDS_MS, LATENCY_BUCKETS, HistoryState, UsageLog, UsageRollup

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# What a summary row counts, as the API names it.
TOTALS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost")
# What a chart point counts.
MEASURES = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost", "latency_ms")
# group_by value → the column grouped on (the same on rollups and raw rows).
GROUPS = {"user": "user_id", "team": "team_id", "token": "token_id", "model": "model", "channel": "channel_id"}
# group_by value → the field naming a group, on the model the rollups point at.
_NAMES = {"user": "username", "team": "name", "token": "name", "channel": "name"}


@dataclass(frozen=True, slots=True)
class Segment:
    source: str  # "raw", "hour" or "day"
    start: datetime | None  # None: from the beginning
    end: datetime | None  # None: up to now


@dataclass(frozen=True, slots=True)
class Plan:
    since: datetime | None  # the window actually read
    until: datetime | None
    segments: tuple[Segment, ...]


@dataclass
class Summary:
    since: datetime | None
    until: datetime | None
    results: list[dict[str, Any]]  # key, name and TOTALS, biggest cost first
    total: dict[str, int] = field(default_factory=dict)


def pruned_before() -> datetime | None:
    return HistoryState.objects.filter(pk=1).values_list("pruned_before", flat=True).first()


def _floor(t: datetime, step: timedelta) -> datetime:
    t = t.astimezone(UTC)
    if step == DAY:
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t.replace(minute=0, second=0, microsecond=0)


def _ceil(t: datetime, step: timedelta) -> datetime:
    floor = _floor(t, step)
    return floor if floor == t else floor + step


def plan(since: datetime | None, until: datetime | None, raw_from: datetime | None) -> Plan:
    """Split [since, until) into day, hour and raw segments; ``raw_from``:
    the instant before which raw rows may be gone (None: all are kept)."""
    segments: list[Segment] = []
    if since is not None and since != _floor(since, HOUR) and raw_from is not None and since < raw_from:
        since = _floor(since, HOUR)
    if until is not None and until != _floor(until, HOUR) and raw_from is not None and until < raw_from:
        until = _floor(until, HOUR)
    if since is not None and until is not None and until <= since:
        return Plan(since, until, ())
    first_hour = None if since is None else _ceil(since, HOUR)
    last_hour = None if until is None else _floor(until, HOUR)
    if first_hour is not None and last_hour is not None and first_hour > last_hour:
        # Both bounds inside one hour.
        return Plan(since, until, (Segment("raw", since, until),))
    if since is not None and first_hour != since:
        segments.append(Segment("raw", since, first_hour))
    first_day = None if first_hour is None else _ceil(first_hour, DAY)
    last_day = None if last_hour is None else _floor(last_hour, DAY)
    if first_day is not None and last_day is not None and first_day >= last_day:
        segments.append(Segment("hour", first_hour, last_hour))
    else:
        if first_hour is not None and first_day != first_hour:
            segments.append(Segment("hour", first_hour, first_day))
        segments.append(Segment("day", first_day, last_day))
        if last_hour is not None and last_day != last_hour:
            segments.append(Segment("hour", last_day, last_hour))
    if until is not None and last_hour != until:
        segments.append(Segment("raw", last_hour, until))
    return Plan(since, until, tuple(s for s in segments if s.start is None or s.end is None or s.start < s.end))


def _rows(segment: Segment, filters: dict[str, Any]) -> QuerySet[Any]:
    """The rollups or raw rows of one segment, filtered."""
    if segment.source == "raw":
        rows: QuerySet[Any] = UsageLog.objects.filter(**filters)
        if segment.start is not None:
            rows = rows.filter(created_at__gte=segment.start)
        if segment.end is not None:
            rows = rows.filter(created_at__lt=segment.end)
        return rows
    rows = UsageRollup.objects.filter(span=segment.source, **filters)
    if segment.start is not None:
        rows = rows.filter(start__gte=segment.start)
    if segment.end is not None:
        rows = rows.filter(start__lt=segment.end)
    return rows


def _sums(source: str, measures: Iterable[str]) -> dict[str, Any]:
    """Aggregates of ``measures`` over rollups, or over raw rows (a request each)."""
    out: dict[str, Any] = {}
    for name in measures:
        if source != "raw":
            out[name] = _sum(name)
        elif name == "requests":
            out[name] = Count("id")
        elif name == "errors":
            out[name] = Count("id", filter=_error_filter())
        elif name in LATENCY_BUCKETS:
            out[name] = Count("id", filter=_bucket_filter(name))
        else:
            out[name] = _sum(name)
    return out


def _sum(name: str) -> Cast:
    # PostgreSQL sums bigints as numeric, which arrives as Decimal: cast back in SQL.
    return Cast(Sum(name), BigIntegerField())


def _error_filter() -> Q:
    return Q(status__gte=400)


def _bucket_filter(name: str) -> Q:
    i = LATENCY_BUCKETS.index(name)
    low = Q(latency_ms__gt=LATENCY_BOUNDS_MS[i - 1]) if i > 0 else Q()
    return low & Q(latency_ms__lte=LATENCY_BOUNDS_MS[i]) if i < len(LATENCY_BOUNDS_MS) else low


def summary(
    group_by: str, *, since: datetime | None, until: datetime | None, filters: dict[str, Any] | None = None
) -> Summary:
    """Totals per user, team, token, model or channel over [since, until),
    biggest cost first. ``filters``: any of user_id, team_id, token_id,
    model (a viewer's scope included). A team is the team charged: the
    user's when the request was made."""
    column = GROUPS[group_by]
    window = plan(since, until, pruned_before())
    groups: dict[Any, dict[str, int]] = {}
    for segment in window.segments:
        rows = _rows(segment, filters or {}).order_by().values(column).annotate(**_sums(segment.source, TOTALS))
        for row in rows:
            group = groups.setdefault(row[column], dict.fromkeys(TOTALS, 0))
            for name in TOTALS:
                group[name] += row[name] or 0
    names = _names(group_by, list(groups))
    results = [{"key": key, "name": names.get(key), **measures} for key, measures in groups.items()]
    results.sort(key=lambda r: (-r["cost"], r["key"] is None, r["key"] if r["key"] is not None else 0))
    total = {name: sum(r[name] for r in results) for name in TOTALS}
    return Summary(window.since, window.until, results, total)


def _names(group_by: str, keys: list[Any]) -> dict[Any, str | None]:
    if group_by == "model":
        return {key: key for key in keys}
    model = UsageRollup._meta.get_field(group_by).related_model
    label = _NAMES[group_by]
    ids = [key for key in keys if key is not None]
    named: dict[Any, str | None] = {}
    for i in range(0, len(ids), 500):
        named.update(model._default_manager.filter(pk__in=ids[i : i + 500]).values_list("pk", label))  # type: ignore[union-attr]
    return named


def series(
    *,
    since: datetime,
    until: datetime,
    step: str = "hour",
    by: str | None = None,
    filters: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The dashboard's main query: requests, errors, tokens, cost (µUSD),
    latency (sum and histogram) per hour or per day over [since, until),
    optionally per model, channel, team, user or token. Read from the
    rollups of that step alone: since and until are rounded down to it.
    Points come in time order, then biggest cost first; hours or days
    without usage have no point."""
    if step not in ("hour", "day"):
        raise ValueError("step is 'hour' or 'day'")
    size = HOUR if step == "hour" else DAY
    start, end = _floor(since, size), _floor(until, size)
    columns = ["start"] + ([GROUPS[by]] if by else [])
    rows = (
        UsageRollup.objects.filter(span=step, start__gte=start, start__lt=end, **(filters or {}))
        .order_by()
        .values(*columns)
        .annotate(**_sums(step, (*MEASURES, *LATENCY_BUCKETS)))
    )
    points = []
    for row in rows:
        key = row[GROUPS[by]] if by else None
        points.append(
            {
                "start": row["start"],
                "key": key,
                **{name: row[name] or 0 for name in MEASURES},
                "latency_histogram": [row[name] or 0 for name in LATENCY_BUCKETS],
            }
        )
    names = _names(by, list({p["key"] for p in points})) if by else {}
    for point in points:
        point["name"] = names.get(point["key"]) if by else None
    points.sort(key=lambda p: (p["start"], -p["cost"], p["key"] is None, p["key"] if p["key"] is not None else 0))
    return points


def latency_quantile(histogram: list[int], q: float) -> int | None:
    """The upper bound (ms) of the histogram bucket holding quantile ``q``
    (0 < q ≤ 1); None for an empty histogram or the open last bucket."""
    total = sum(histogram)
    if not total:
        return None
    seen = 0
    for bound, count in zip((*LATENCY_BOUNDS_MS, None), histogram, strict=True):
        seen += count
        if seen >= q * total:
            return bound
    return None
