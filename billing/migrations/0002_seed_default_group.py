from django.db import migrations


def seed(apps, schema_editor):
    apps.get_model("billing", "Group").objects.get_or_create(name="default", defaults={"multiplier": 1})


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
