"""`make run`: bootstrap, collect static files, then the ASGI server, a
Celery worker and beat.

Ctrl-C (or SIGTERM) stops all three; if one dies, the others are stopped
too, so a half-running gateway never looks healthy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the gateway: ASGI server (relay + admin + API), Celery worker and beat."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--no-celery", action="store_true", help="Only the ASGI server.")

    def handle(self, *args, host: str, no_celery: bool, **options) -> None:
        call_command("bootstrap")
        # The admin's CSS and JS with hashed names, for WhiteNoise to serve.
        call_command("collectstatic", interactive=False, verbosity=0)
        bin_dir = os.path.dirname(sys.executable)
        mode = "service" if settings.SERVICE_MODE else "embedded"
        commands = {
            "web": [
                f"{bin_dir}/uvicorn",
                "oneproxy.asgi:application",
                "--host",
                host,
                "--port",
                str(settings.PORT),
                "--workers",
                str(settings.WEB_CONCURRENCY),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--lifespan",
                "on",
            ],
        }
        if not no_celery:
            commands["worker"] = [
                f"{bin_dir}/celery",
                "-A",
                "oneproxy",
                "worker",
                "--loglevel",
                "INFO",
                "--prefetch-multiplier",
                "1",
                "--concurrency",
                "2",
                "-n",
                f"worker-{os.getpid()}@%h",
            ]
            commands["beat"] = [
                f"{bin_dir}/celery",
                "-A",
                "oneproxy",
                "beat",
                "--loglevel",
                "INFO",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--pidfile",
                "",
            ]
        self.stdout.write(f"oneproxy ({mode} mode) on http://{host}:{settings.PORT}/  admin: /admin/")
        self.stdout.flush()
        procs = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with {proc.returncode}; stopping the rest")
                    exit_code = proc.returncode or 1
                    stopping = True
            time.sleep(0.2)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        sys.exit(exit_code)
