"""First start: migrate, roll up an upgraded database's usage, seed, and make sure the operator ``root`` exists."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from billing import services
from billing.models import User


class Command(BaseCommand):
    help = "Apply migrations and create the operator 'root' on first start (idempotent)."

    def handle(self, *args, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        # An upgraded database's usage rows are rolled up before anything
        # serves: budgets and totals read the rollups. Nothing to do otherwise.
        if services.history_to_backfill():
            call_command("backfill_history")
        root = User.objects.filter(username="root").first()
        if root is None:
            password = settings.ONEPROXY_ADMIN_PASSWORD
            generated = password is None
            if generated:
                password = secrets.token_urlsafe(12)
            root, token = services.create_user(username="root", password=password, role=User.Role.OPERATOR)
            self.stdout.write("Created operator 'root'.")
            if generated:
                # Printed once; never a fixed default.
                self.stdout.write(f"  admin password (shown once): {password}")
            if settings.ONEPROXY_ADMIN_ACCESS_TOKEN is None:
                self.stdout.write(f"  management access token (shown once): {token}")
        if settings.ONEPROXY_ADMIN_ACCESS_TOKEN:
            services.set_access_token(root, settings.ONEPROXY_ADMIN_ACCESS_TOKEN)
        from oneproxy.schedules import ensure_schedules

        ensure_schedules()
