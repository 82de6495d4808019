# ConfigVersion now lives in core (both apps bump it). The table is renamed,
# not recreated, so the current version survives; its content type follows.

from django.db import migrations


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="core", model="configversion").exists():
        ContentType.objects.filter(app_label="channels_app", model="configversion").update(app_label="core")


def move_content_type_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="channels_app", model="configversion").exists():
        ContentType.objects.filter(app_label="core", model="configversion").update(app_label="channels_app")


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0004_probes_balances_notifications"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.AlterModelTable(name="configversion", table="core_configversion")],
            state_operations=[migrations.DeleteModel(name="ConfigVersion")],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
