"""First start, health probes, and the one-way dependency rule."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from billing.models import Group, User
from relay.relay_keys import hash_key

pytestmark = pytest.mark.django_db


def test_bootstrap_creates_root_with_the_configured_token(settings, capsys):
    # given
    settings.ONEPROXY_ADMIN_PASSWORD = None
    settings.ONEPROXY_ADMIN_ACCESS_TOKEN = "a-very-secret-token-123"
    # when
    call_command("bootstrap")
    call_command("bootstrap")  # idempotent
    # then
    root = User.objects.get(username="root")
    assert root.is_operator and root.is_superuser and root.has_usable_password()
    assert root.access_token_hash == hash_key("a-very-secret-token-123")
    out = capsys.readouterr().out
    assert out.count("admin password (shown once)") == 1
    assert Group.objects.filter(name="default").exists()


def test_root_token_drives_the_api(settings, client):
    settings.ONEPROXY_ADMIN_ACCESS_TOKEN = "a-very-secret-token-123"
    call_command("bootstrap")
    response = client.get("/api/me/", HTTP_AUTHORIZATION="Bearer a-very-secret-token-123")
    assert response.status_code == 200
    assert response.json()["username"] == "root"


def test_health_endpoints(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/nothing/here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
