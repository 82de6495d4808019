"""Admin for reconciliation reports (read-only)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from billing.models import (
    ReconcileReport,
)
from core.admin import (
    OperatorOnlyAdmin,
    ReadOnlyAdminMixin,
)

# -- reconciliation --------------------------------------------------------------------


@admin.register(ReconcileReport)
class ReconcileReportAdmin(ReadOnlyAdminMixin, OperatorOnlyAdmin):
    """What each billing.reconcile run found; written only by the task."""

    list_display = (
        "created_at",
        "is_clean",
        "users_checked",
        "drifted_users",
        "usage_drifted_users",
        "rollup_drifted_hours",
        "budget_drifted",
        "unrolled_usage",
        "mirrors_checked",
        "stale_holds_released",
        "released_count",
        "service_mode",
    )
    list_filter = ("service_mode",)
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "service_mode",
        "users_checked",
        "drifted_users",
        "drift_table",
        "usage_drifted_users",
        "usage_drift_table",
        "hours_checked",
        "rollup_drifted_hours",
        "rollup_drift_table",
        "budget_drifted",
        "budget_drift_table",
        "unrolled_usage",
        "mirrors_checked",
        "stale_holds_released",
        "mirrors_pending",
        "released_table",
    )
    readonly_fields = fields

    @admin.display(description=_("clean"), boolean=True)
    def is_clean(self, obj: ReconcileReport) -> bool:
        return obj.is_clean

    @admin.display(description=_("mirrors released"))
    def released_count(self, obj: ReconcileReport) -> int:
        return len(obj.mirrors_released)

    @admin.display(description=_("drift (µUSD: balance column, ledger sum, balance − ledger; fixed to the ledger)"))
    def drift_table(self, obj: ReconcileReport) -> str:
        return _table(obj.drift)

    @admin.display(description=_("usage drift (µUSD: charged in the ledger, settled usage, charged − settled)"))
    def usage_drift_table(self, obj: ReconcileReport) -> str:
        return _table(obj.usage_drift)

    @admin.display(description=_("rollup drift (hours whose rollups differ from their raw rows)"))
    def rollup_drift_table(self, obj: ReconcileReport) -> str:
        return _table(obj.rollup_drift)

    @admin.display(description=_("budget counters fixed (µUSD: counter, rollups; set to the rollups)"))
    def budget_drift_table(self, obj: ReconcileReport) -> str:
        return _table(obj.budget_drift)

    @admin.display(description=_("stale holds released (µUSD: mirror, balance)"))
    def released_table(self, obj: ReconcileReport) -> str:
        return _table(obj.mirrors_released)


def _table(rows: list) -> str:
    return json.dumps(rows, indent=1) if rows else "none"
