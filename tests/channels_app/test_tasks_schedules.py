"""The key-pool tasks: their contract names, and their beat schedules in the admin."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_the_tasks_are_registered_under_their_contract_names():
    # given
    from oneproxy.celery import app

    # when
    app.loader.import_default_modules()
    # then
    assert {"channels_app.probe_keys", "channels_app.refresh_balances", "channels_app.notify"} <= set(app.tasks)


def test_bootstrap_creates_the_schedules_and_operators_see_them_in_the_admin(client, operator):
    # given
    from django_celery_beat.models import PeriodicTask

    # when
    call_command("bootstrap")
    # then
    probes = PeriodicTask.objects.get(task="channels_app.probe_keys")
    assert (probes.interval.every, probes.interval.period, json.loads(probes.kwargs)) == (
        60,
        "seconds",
        {"due_only": True},
    )
    assert probes.enabled
    balances = PeriodicTask.objects.get(task="channels_app.refresh_balances")
    assert (balances.interval.every, balances.interval.period, balances.enabled) == (3600, "seconds", True)
    # when an operator opens the periodic tasks
    client.force_login(operator[0])
    page = client.get("/admin/django_celery_beat/periodictask/").content.decode()
    # then both are listed, and each opens for editing
    assert probes.name in page and balances.name in page
    change = client.get(f"/admin/django_celery_beat/periodictask/{probes.pk}/change/")
    assert change.status_code == 200 and "channels_app.probe_keys" in change.content.decode()


def test_an_operators_edit_survives_the_next_start(operator):
    # given
    from django_celery_beat.models import PeriodicTask

    call_command("bootstrap")
    PeriodicTask.objects.filter(task="channels_app.probe_keys").update(enabled=False)
    # when
    call_command("bootstrap")
    # then
    assert list(PeriodicTask.objects.filter(task="channels_app.probe_keys").values_list("enabled", flat=True)) == [
        False
    ]
