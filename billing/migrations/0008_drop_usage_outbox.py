"""Embedded mode queues usage in journal files now (relay/journal.py), not in
a table. Events still in the outbox move into a journal segment no process
holds, so the relay settles them at its next start: nothing is lost."""

from django.db import migrations


def move_outbox_to_journal(apps, schema_editor):  # type: ignore[no-untyped-def]
    outbox = apps.get_model("billing", "UsageOutbox")
    payloads = list(
        outbox.objects.using(schema_editor.connection.alias).order_by("id").values_list("payload", flat=True)
    )
    if not payloads:
        return
    from billing.usage_sink import journal_dir
    from relay.journal import SUFFIX

    directory = journal_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"from-outbox{SUFFIX}").write_bytes(b"".join(bytes(p) + b"\n" for p in payloads))


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_usage_outbox"),
    ]

    operations = [
        migrations.RunPython(move_outbox_to_journal, migrations.RunPython.noop),
        migrations.DeleteModel(name="UsageOutbox"),
    ]
