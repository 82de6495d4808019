from django.db import migrations


def seed(apps, schema_editor):
    apps.get_model("channels_app", "ConfigVersion").objects.get_or_create(pk=1, defaults={"version": 1})


class Migration(migrations.Migration):
    dependencies = [("channels_app", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
