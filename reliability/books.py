"""The books of the reliability run's database, as JSON: every balance
against its ledger and its settled usage, what was written off, what was
charged at a hold's estimate, and key-state changes. ``settle`` first runs
what beat runs (stranded usage, reconcile with stale holds at 0 s)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneproxy.settings")

import django

django.setup()

from django.db.models import Max, Sum  # noqa: E402

from billing import services  # noqa: E402
from billing.models import LedgerEntry, UsageLog, User  # noqa: E402
from channels_app.models import ChannelKey, KeyEvent  # noqa: E402
from relay.settlement import LOST_ERROR  # noqa: E402


def books() -> dict[str, object]:
    users = []
    for user in User.objects.all():
        ledger = LedgerEntry.objects.filter(user=user).aggregate(s=Sum("amount"))["s"] or 0
        topups = LedgerEntry.objects.filter(user=user).exclude(kind="charge").aggregate(s=Sum("amount"))["s"] or 0
        usage = UsageLog.objects.filter(user=user).aggregate(s=Sum("cost"))["s"] or 0
        users.append({"id": user.pk, "balance": user.balance, "ledger": ledger, "topups": topups, "usage": usage})
    rows = UsageLog.objects.all()
    over = max((r.cost + r.written_off - r.held for r in rows.only("cost", "written_off", "held")), default=0)
    return {
        "users": users,
        "exact": all(u["balance"] == u["ledger"] == u["topups"] - u["usage"] for u in users),
        "min_balance": min((u["balance"] for u in users), default=0),
        "max_overdraft": max(over, 0),
        "rows": rows.count(),
        "written_off": rows.aggregate(s=Sum("written_off"))["s"] or 0,
        "lost_charged": rows.filter(error=LOST_ERROR).count(),
        "lost_charged_usd": (rows.filter(error=LOST_ERROR).aggregate(s=Sum("cost"))["s"] or 0) / 1e6,
        "max_latency_ms": rows.aggregate(m=Max("latency_ms"))["m"] or 0,
        "key_events": KeyEvent.objects.count(),
        "key_states": sorted(set(ChannelKey.objects.values_list("state", flat=True))),
    }


def main() -> None:
    if sys.argv[1:] == ["settle"]:
        report = services.reconcile(stale_hold_seconds=0)
        services.settle_stranded_usage(min_idle_ms=0)
        out = books()
        out["stale_holds"] = report.stale_holds_released
    elif sys.argv[1:] == ["reset-keys"]:
        from core.services import bump_config_version

        ChannelKey.objects.update(state="active", cooldown_until=None)
        bump_config_version()
        out = books()
    elif sys.argv[1:] == ["disable-good"]:
        from core.services import bump_config_version

        ChannelKey.objects.update(state="active", cooldown_until=None)
        good = [k.pk for k in ChannelKey.objects.all() if k.reveal() == "sk-upstream-good"]
        ChannelKey.objects.filter(pk__in=good).update(state="manual_disabled")
        bump_config_version()
        out = books()
    else:
        out = books()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
