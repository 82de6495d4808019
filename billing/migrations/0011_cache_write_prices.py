"""Prompt-cache writes priced on their own, and counted on usage rows.

Anthropic bills tokens written to its prompt cache (cache_creation_input_tokens)
above input and those read from it (cache_read_input_tokens) far below it;
reads use the existing cached-input price, writes the new ``cache_write``.
Seeds the cache-write price of the Claude models of the 0005 catalogue from
Anthropic's public pricing page (platform.claude.com/docs/en/about-claude/pricing,
"5m cache writes", the default 5-minute cache; read on 2026-12-01). A row
whose input price an operator changed is left as it is.
"""

import datetime
from decimal import Decimal


from django.db import migrations, models

AS_OF = datetime.date(2026, 12, 1)
SOURCE = "Anthropic pricing page (5m cache writes), read 2026-12-01"
# model, input (as catalogued), 5-minute cache write, USD per 1M tokens
CACHE_WRITES = [
    ("claude-opus-4-7", "5", "6.25"),
    ("claude-opus-4-6", "5", "6.25"),
    ("claude-opus-4-5", "5", "6.25"),
    ("claude-opus-4-5-20251101", "5", "6.25"),
    ("claude-sonnet-4-6", "3", "3.75"),
    ("claude-sonnet-4-5", "3", "3.75"),
    ("claude-sonnet-4-5-20250929", "3", "3.75"),
    ("claude-haiku-4-5", "1", "1.25"),
    ("claude-haiku-4-5-20251001", "1", "1.25"),
]


def seed_cache_writes(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    for model, inp, write in CACHE_WRITES:
        rows = ModelPrice.objects.filter(model=model, channel_type="", input=Decimal(inp), cache_write__isnull=True)
        for row in rows:
            source = f"{row.source}; cache write: {SOURCE}" if row.source else f"cache write: {SOURCE}"
            ModelPrice.objects.filter(pk=row.pk).update(cache_write=Decimal(write), source=source[:255])


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0010_history_rollups_batches_budget_counters'),
    ]

    operations = [
        migrations.AddField(
            model_name='modelprice',
            name='cache_write',
            field=models.DecimalField(blank=True, decimal_places=6, help_text='Per 1M prompt tokens written to a prompt cache (Anthropic); empty: same as input.', max_digits=14, null=True),
        ),
        migrations.AddField(
            model_name='usagelog',
            name='cache_write_tokens',
            field=models.PositiveIntegerField(default=0, help_text='Of the prompt: written to a prompt cache.'),
        ),
        migrations.AlterField(
            model_name='usagelog',
            name='cached_tokens',
            field=models.PositiveIntegerField(default=0, help_text='Of the prompt: read from a prompt cache.'),
        ),
        migrations.RunPython(seed_cache_writes, migrations.RunPython.noop),
    ]
