"""ASGI entry point: the relay serves /v1/* and its other paths; Django the rest."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneproxy.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
