"""Seed the reliability run's database: prices, a user with $1,000, a relay
token, and one OpenAI channel with two keys on the emulator (one kept healthy,
one the faults are injected on). Prints {"key", "user_id"} as JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneproxy.settings")

import django

django.setup()

from billing import services  # noqa: E402
from billing.models import ModelPrice  # noqa: E402
from billing.money import to_micro  # noqa: E402
from channels_app.models import Channel  # noqa: E402
from channels_app.services import create_channel  # noqa: E402


def main() -> None:
    for model, inp, out in [("gpt-4o-mini", "0.15", "0.60"), ("text-embedding-3-small", "0.02", "0")]:
        ModelPrice.objects.update_or_create(model=model, channel_type="", defaults={"input": inp, "output": out})
    ModelPrice.objects.update_or_create(model="whisper-1", channel_type="", defaults={"per_second": "0.0001"})
    user, _ = services.create_user(username="reliability")
    services.topup(user, to_micro("1000"))
    _, key = services.create_token(user=user, name="reliability")
    channel = create_channel(
        name="emulator",
        type="openai",
        base_url=sys.argv[1],
        models=["gpt-4o-mini", "text-embedding-3-small", "whisper-1"],
        keys=["sk-upstream-faulty", "sk-upstream-good"],
    )
    # Stalls cost two seconds, not two minutes.
    Channel.objects.filter(pk=channel.pk).update(connect_timeout=2.0, first_byte_timeout=2.0, idle_timeout=2.0)
    print(json.dumps({"key": key, "user_id": user.pk}))


if __name__ == "__main__":
    main()
