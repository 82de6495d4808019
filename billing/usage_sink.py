"""Turns the relay's usage events into UsageLog rows and ledger charges."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F

from billing.models import LedgerEntry, Token, UsageLog, UsageOutbox, User
from relay.ports import Settled, UsageEvent, decode_event, encode_event

# Queued events settled per transaction.
SETTLE_BATCH = 2_000


@transaction.atomic
def apply_usage(events: list[UsageEvent]) -> Settled:
    """Write a batch in one transaction. Idempotent: an event whose request id
    is already logged is skipped, so a redelivered event is charged once."""
    ids = [e.request_id for e in events]
    seen = set(UsageLog.objects.filter(request_id__in=ids).values_list("request_id", flat=True))
    fresh: dict[str, UsageEvent] = {}
    for event in events:
        if event.request_id not in seen:
            fresh.setdefault(event.request_id, event)
    if not fresh:
        return Settled()
    logs = UsageLog.objects.bulk_create([_log_row(e) for e in fresh.values()])
    user_ids = sorted({e.user_id for e in fresh.values()})
    # Lock the users in a fixed order so concurrent writers cannot deadlock.
    balances = dict(
        User.objects.select_for_update().filter(pk__in=user_ids).order_by("pk").values_list("pk", "balance")
    )
    entries = []
    spent_by_token: dict[int, int] = {}
    for row, event in zip(logs, fresh.values(), strict=True):
        if event.token_id is not None and event.cost:
            spent_by_token[event.token_id] = spent_by_token.get(event.token_id, 0) + event.cost
        if event.cost:
            balances[event.user_id] -= event.cost
            entries.append(
                LedgerEntry(
                    user_id=event.user_id,
                    kind=LedgerEntry.Kind.CHARGE,
                    amount=-event.cost,
                    balance_after=balances[event.user_id],
                    usage_id=row.pk,
                    note=event.model[:255],
                )
            )
    LedgerEntry.objects.bulk_create(entries)
    for user_id in user_ids:
        User.objects.filter(pk=user_id).update(balance=balances[user_id])
    now = datetime.now(UTC)
    for token_id, spent in spent_by_token.items():
        Token.objects.filter(pk=token_id).update(used=F("used") + spent, last_used_at=now)
    return current_balances(user_ids, list(spent_by_token))


def current_balances(user_ids: list[int], token_ids: list[int]) -> Settled:
    return Settled(
        balances=dict(User.objects.filter(pk__in=user_ids).values_list("pk", "balance")),
        token_used=dict(Token.objects.filter(pk__in=token_ids).values_list("pk", "used")),
    )


def _log_row(e: UsageEvent) -> UsageLog:
    return UsageLog(
        request_id=e.request_id,
        created_at=datetime.fromtimestamp(e.created_at, UTC),
        user_id=e.user_id,
        token_id=e.token_id,
        endpoint=e.endpoint,
        model=e.model[:128],
        upstream_model=e.upstream_model[:128],
        channel_id=e.channel_id,
        key_id=e.key_id,
        prompt_tokens=e.usage.prompt_tokens,
        completion_tokens=e.usage.completion_tokens,
        cached_tokens=e.usage.cached_tokens,
        estimated=e.usage.estimated,
        cost=e.cost,
        group_multiplier=Decimal(e.group_multiplier),
        team_multiplier=Decimal(e.team_multiplier),
        attempts=e.attempts,
        status=e.status,
        latency_ms=e.latency_ms,
        stream=e.stream,
        error=e.error,
    )


def queue_usage(events: list[UsageEvent]) -> None:
    """Durably queue events (one small INSERT per batch): what the response
    waits for in embedded mode. Settlement follows off the request path."""
    now = time.time()
    table = UsageOutbox._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (payload, queued_at) VALUES (%s, %s)",
            [(encode_event(e), now) for e in events],
        )


@transaction.atomic
def settle_queued(older_than: float | None = None) -> tuple[list[UsageEvent], Settled]:
    """Turn queued events into usage rows and charges, and drop them from the
    queue, in one transaction (so each is settled exactly once). With
    ``older_than`` (seconds), only events queued at least that long ago:
    what a dead relay process left behind."""
    rows = UsageOutbox.objects.order_by("id")
    if older_than is not None:
        rows = rows.filter(queued_at__lte=time.time() - older_than)
    batch = list(rows.values_list("id", "payload")[:SETTLE_BATCH])
    if not batch:
        return [], Settled()
    events = [decode_event(bytes(payload)) for _, payload in batch]
    settled = apply_usage(events)
    UsageOutbox.objects.filter(id__in=[row_id for row_id, _ in batch]).delete()
    return events, settled
