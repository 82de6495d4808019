"""`manage.py prune_usage_logs`: what the beat task does, with progress shown."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from billing import services


class Command(BaseCommand):
    help = (
        "Delete the raw usage rows older than the retention (ONEPROXY_USAGE_RETENTION_DAYS unless --days), "
        "in batches of at most 5,000; their rollups and ledger charges stay."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None, help="retention in days (default: the setting)")

    def handle(self, *args, days: int | None, **options) -> None:
        days = settings.ONEPROXY_USAGE_RETENTION_DAYS if days is None else days
        if days < 1:
            self.stderr.write("--days must be at least 1")
            raise SystemExit(2)
        self.stdout.write(f"Pruning raw usage rows older than {days} day(s) …")
        deleted = services.prune_usage_logs(days=days, progress=self.progress)
        if deleted:
            self.stdout.write("")
        self.stdout.write(f"{deleted:,} usage row(s) deleted.")

    def progress(self, deleted: int) -> None:
        self.stdout.write(f"\r  {deleted:,} rows deleted", ending="")
        self.stdout.flush()
