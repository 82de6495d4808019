"""The relay's Backend (relay/ports.py) implemented with the Django apps."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import close_old_connections, connections

from billing import snapshot as billing_snapshot
from billing import usage_sink
from channels_app import services as channel_services
from channels_app.snapshot import load_channels, load_disable_phrases
from core import services as core_services
from relay.app import RelayConfig
from relay.ports import Settled, UsageEvent
from relay.snapshot import Snapshot


class DjangoBackend:
    def config_version(self) -> int:
        close_old_connections()
        return core_services.config_version()

    def load_snapshot(self) -> Snapshot:
        close_old_connections()
        version = self.config_version()
        users = billing_snapshot.load_users()
        spent, next_period_end = billing_snapshot.load_budget_spent(users, time.time())
        return Snapshot.build(
            version=version,
            tokens=billing_snapshot.load_tokens(),
            users=users,
            spent=spent,
            next_period_end=next_period_end,
            channels=load_channels(),
            prices=billing_snapshot.load_prices(),
            refuse_unpriced=settings.ONEPROXY_REFUSE_UNPRICED,
            disable_phrases=load_disable_phrases(),
        )

    def apply_usage(self, events: list[UsageEvent]) -> Settled:
        close_old_connections()
        return usage_sink.apply_usage(events)

    def balances(self, user_ids: list[int], token_ids: list[int]) -> Settled:
        close_old_connections()
        return usage_sink.current_balances(user_ids, token_ids)

    def record_key_transitions(self, transitions: list) -> None:
        close_old_connections()
        channel_services.record_key_transitions(transitions)

    def record_key_stats(self, stats: dict[int, tuple[float, float | None, int | None]]) -> None:
        close_old_connections()
        channel_services.record_key_stats(stats)

    def budget_spent(self, kind: str, subject_id: int, period: str) -> int:
        """Spending of one user or team in its current period (seeds Redis allowances)."""
        close_old_connections()
        return billing_snapshot.spent_in_current_period(kind, subject_id, period, time.time())

    def close(self) -> None:
        connections.close_all()


def relay_config() -> RelayConfig:
    return RelayConfig(
        max_body_bytes=settings.ONEPROXY_MAX_BODY_BYTES,
        trusted_proxies=settings.ONEPROXY_TRUSTED_PROXIES,
        retry_count=settings.ONEPROXY_RETRY_COUNT,
        default_max_tokens=settings.ONEPROXY_DEFAULT_MAX_TOKENS,
        redis_url=settings.REDIS_URL,
        redis_prefix=str(settings.ONEPROXY_REDIS_PREFIX),
        journal_dir=None if settings.REDIS_URL else usage_sink.journal_dir(),
        max_cooldown=float(settings.ONEPROXY_MAX_COOLDOWN_SECONDS),
        redis_timeout=settings.ONEPROXY_REDIS_TIMEOUT_MS / 1000,
        body_timeout=float(settings.ONEPROXY_BODY_TIMEOUT_SECONDS),
        max_receiving=settings.ONEPROXY_MAX_RECEIVING,
        image_fetch_max_bytes=settings.ONEPROXY_IMAGE_FETCH_MAX_BYTES,
        image_fetch_networks=settings.ONEPROXY_IMAGE_FETCH_ALLOW_NETWORKS,
    )
