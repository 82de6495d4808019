"""Admin for reconciliation reports (read-only)."""

from __future__ import annotations

import json

from django.contrib import admin

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
        "unbilled_usage",
        "mismatched_charges",
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
        "unbilled_usage",
        "mismatched_charges",
        "mirrors_checked",
        "stale_holds_released",
        "mirrors_pending",
        "released_table",
    )
    readonly_fields = fields

    @admin.display(description="clean", boolean=True)
    def is_clean(self, obj: ReconcileReport) -> bool:
        return obj.is_clean

    @admin.display(description="mirrors released")
    def released_count(self, obj: ReconcileReport) -> int:
        return len(obj.mirrors_released)

    @admin.display(description="drift (µUSD: balance column, ledger sum, balance − ledger; fixed to the ledger)")
    def drift_table(self, obj: ReconcileReport) -> str:
        return json.dumps(obj.drift, indent=1) if obj.drift else "none"

    @admin.display(description="stale holds released (µUSD: mirror, balance)")
    def released_table(self, obj: ReconcileReport) -> str:
        return json.dumps(obj.mirrors_released, indent=1) if obj.mirrors_released else "none"
