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


def test_sql_dsn_is_an_alias_of_database_url(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("SQL_DSN", "postgres://app@db.internal:5432/oneproxy")
    assert env.envdatabase() == "postgres://app@db.internal:5432/oneproxy"
    monkeypatch.setenv("DATABASE_URL", "postgres://app@db.internal:5432/oneproxy")
    assert env.envdatabase() == "postgres://app@db.internal:5432/oneproxy"
    monkeypatch.setenv("DATABASE_URL", "postgres://app@db.internal:5432/other")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL and SQL_DSN name different databases"):
        env.envdatabase()


def test_sql_dsn_in_one_apis_form_is_read_as_postgresql(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv(
        "SQL_DSN", "root:p@ss:w/rd@tcp(10.0.0.5:5433)/oneapi?charset=utf8mb4&parseTime=True&sslmode=require"
    )
    assert env.envdatabase() == "postgres://root:p%40ss%3Aw%2Frd@10.0.0.5:5433/oneapi?sslmode=require"
    monkeypatch.setenv("SQL_DSN", "oneapi@tcp(localhost)/oneapi")
    assert env.envdatabase() == "postgres://oneapi@localhost:5432/oneapi"
    monkeypatch.setenv("SQL_DSN", "tcp(127.0.0.1:5432)/oneapi")
    assert env.envdatabase() == "postgres://127.0.0.1:5432/oneapi"
    for bad in ("mysql://root@db/oneapi", "root@tcp(db:port)/oneapi", "just-a-name"):
        monkeypatch.setenv("SQL_DSN", bad)
        with pytest.raises(ImproperlyConfigured, match="SQL_DSN"):
            env.envdatabase()


@pytest.mark.service
def test_sql_dsn_in_one_apis_form_reaches_postgresql(tmp_path):
    """A one-api environment (SQL_DSN, no DATABASE_URL) starts against PostgreSQL."""
    import subprocess
    import sys

    from django.conf import settings

    db = settings.DATABASES["default"]
    dsn = f"{db['USER']}@tcp({db['HOST']}:{db['PORT']})/{db['NAME']}?charset=utf8mb4&parseTime=True&loc=Local"
    probe = "from django.db import connection; connection.ensure_connection(); print(connection.vendor)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", probe],
        env={"PATH": "/usr/bin:/bin", "ONEPROXY_DATA_DIR": str(tmp_path), "SQL_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "postgresql"
