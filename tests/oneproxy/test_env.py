"""The environment readers stop start-up with a message naming the variable."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from oneproxy import env


def test_envint_names_the_variable(monkeypatch):
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ImproperlyConfigured, match="PORT must be an integer"):
        env.envint("PORT", 3000)
    monkeypatch.setenv("PORT", "70000")
    with pytest.raises(ImproperlyConfigured, match="PORT must be at most 65535"):
        env.envint("PORT", 3000, maximum=65535)


def test_envbool_and_cidrs(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env.envbool("DEBUG", False)
    monkeypatch.setenv("ONEPROXY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert [str(n) for n in env.envcidrs("ONEPROXY_TRUSTED_PROXIES")] == ["10.0.0.0/8", "192.168.1.1/32"]
    monkeypatch.setenv("ONEPROXY_TRUSTED_PROXIES", "10.0.0.0/8,not-a-net")
    with pytest.raises(ImproperlyConfigured, match="ONEPROXY_TRUSTED_PROXIES: 'not-a-net'"):
        env.envcidrs("ONEPROXY_TRUSTED_PROXIES")


def test_envtoken_length_and_printable(monkeypatch):
    monkeypatch.setenv("ONEPROXY_ADMIN_ACCESS_TOKEN", "short")
    with pytest.raises(ImproperlyConfigured, match="ONEPROXY_ADMIN_ACCESS_TOKEN"):
        env.envtoken("ONEPROXY_ADMIN_ACCESS_TOKEN")
    monkeypatch.setenv("ONEPROXY_ADMIN_ACCESS_TOKEN", "has space in it 123456")
    with pytest.raises(ImproperlyConfigured):
        env.envtoken("ONEPROXY_ADMIN_ACCESS_TOKEN")
    monkeypatch.setenv("ONEPROXY_ADMIN_ACCESS_TOKEN", "x" * 16)
    assert env.envtoken("ONEPROXY_ADMIN_ACCESS_TOKEN") == "x" * 16


def test_envurl_and_file_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", "http://nope")
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL must be a URL"):
        env.envurl("REDIS_URL", ("redis",))
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("SOME_SECRET", raising=False)
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret))
    assert env.envstr("SOME_SECRET") == "from-a-file"


def test_persistent_secret_is_generated_once(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = env.persistent_secret("SECRET_KEY", tmp_path, env.new_django_secret)
    again = env.persistent_secret("SECRET_KEY", tmp_path, env.new_django_secret)
    assert first == again and len(first) > 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_bad_setting_stops_startup_with_the_name(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={"PATH": "/usr/bin:/bin", "ONEPROXY_DATA_DIR": str(tmp_path), "ONEPROXY_MAX_BODY_BYTES": "lots"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ONEPROXY_MAX_BODY_BYTES must be an integer" in result.stderr
