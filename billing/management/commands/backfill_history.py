"""`manage.py backfill_history`: roll up usage rows settled before rollups existed."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from billing import services


class Command(BaseCommand):
    help = (
        "Roll up the usage rows of an upgraded database (rollups, teams, budget counters) in chunks, "
        "with a progress bar. Resumable and idempotent: run it again after an interruption."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chunk", type=int, default=services.BACKFILL_CHUNK, help="rows per transaction")

    def handle(self, *args, chunk: int, **options) -> None:
        if chunk < 1:
            self.stderr.write("--chunk must be at least 1")
            raise SystemExit(2)
        done = services.backfill_history(chunk=chunk, progress=self.progress)
        if done:
            self.stdout.write("")
        self.stdout.write(f"{done:,} usage row(s) rolled up; nothing is left to back-fill.")

    def progress(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        self.stdout.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,} / {total:,} usage rows ({done / total:.0%})",
            ending="",
        )
        self.stdout.flush()
