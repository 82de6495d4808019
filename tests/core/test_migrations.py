"""Moving ConfigVersion from channels_app to core keeps an existing database's rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("channels_app", "0004_probes_balances_notifications")


def migrate(targets: list[tuple[str, str]] | None = None) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return MigrationExecutor(connection)


@pytest.mark.django_db(transaction=True)
def test_the_config_version_and_its_content_type_survive_the_move_to_core() -> None:
    from django.contrib.contenttypes.models import ContentType

    from core.models import ConfigVersion

    # given: a database as it was before the move, with a version and its content type
    old = migrate([BEFORE]).loader.project_state([BEFORE]).apps
    try:
        old.get_model("channels_app", "ConfigVersion").objects.update_or_create(pk=1, defaults={"version": 4242})
        ContentType.objects.filter(app_label="core", model="configversion").delete()
        old_type, _ = ContentType.objects.get_or_create(app_label="channels_app", model="configversion")
    finally:
        # when
        migrate()
    # then
    assert ConfigVersion.objects.get(pk=1).version == 4242
    moved = ContentType.objects.get(pk=old_type.pk)
    assert (moved.app_label, moved.model) == ("core", "configversion")
    assert not ContentType.objects.filter(app_label="channels_app", model="configversion").exists()
