"""A small seed of OpenAI list prices (USD per 1M tokens, as published by
OpenAI, as of 2025-06) and the default price "*" charged for unpriced models.
Operators edit these in the admin."""

from decimal import Decimal

from django.db import migrations

PRICES = [
    # model, input, output, cached input, per image
    ("*", "2.50", "10.00", None, "0"),
    ("gpt-4o", "2.50", "10.00", "1.25", "0"),
    ("gpt-4o-mini", "0.15", "0.60", "0.075", "0"),
    ("gpt-4.1", "2.00", "8.00", "0.50", "0"),
    ("gpt-4.1-mini", "0.40", "1.60", "0.10", "0"),
    ("gpt-4.1-nano", "0.10", "0.40", "0.025", "0"),
    ("o3-mini", "1.10", "4.40", "0.55", "0"),
    ("o4-mini", "1.10", "4.40", "0.275", "0"),
    ("gpt-3.5-turbo", "0.50", "1.50", None, "0"),
    ("gpt-3.5-turbo-instruct", "1.50", "2.00", None, "0"),
    ("text-embedding-3-small", "0.02", "0", None, "0"),
    ("text-embedding-3-large", "0.13", "0", None, "0"),
    ("text-embedding-ada-002", "0.10", "0", None, "0"),
    ("omni-moderation-latest", "0", "0", None, "0"),
    ("dall-e-3", "0", "0", None, "0.04"),
    ("gpt-image-1", "5.00", "40.00", "1.25", "0"),
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    for model, inp, out, cached, image in PRICES:
        ModelPrice.objects.get_or_create(
            model=model,
            channel_type="",
            defaults={
                "input": Decimal(inp),
                "output": Decimal(out),
                "cached_input": Decimal(cached) if cached else None,
                "per_image": Decimal(image),
            },
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_seed_default_group")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
