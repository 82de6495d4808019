"""Strict readers for settings that come from the environment.

Every reader raises ``ImproperlyConfigured`` naming the variable, so a bad
value stops start-up with a message the operator can act on.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import overload
from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured


def _raw(name: str) -> str | None:
    """The variable's value, or the contents of the file named by NAME_FILE
    (Docker secrets), or None when neither is set or the value is empty."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return None


@overload
def envstr(name: str, default: str) -> str: ...
@overload
def envstr(name: str, default: None = None) -> str | None: ...
def envstr(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def envbool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def envint(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}")
    return number


def envcidrs(name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDRs (or single addresses)."""
    value = _raw(name)
    if value is None:
        return ()
    networks = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {part!r} is not an IP network (CIDR)") from None
    return tuple(networks)


def envtoken(name: str) -> str | None:
    """A secret token of 16–256 printable ASCII characters, no spaces."""
    value = _raw(name)
    if value is None:
        return None
    if not 16 <= len(value) <= 256 or not all(33 <= ord(c) <= 126 for c in value):
        raise ImproperlyConfigured(f"{name} must be 16–256 printable characters without spaces")
    return value


def envurl(name: str, schemes: tuple[str, ...]) -> str | None:
    value = _raw(name)
    if value is None:
        return None
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}")
    return value


DATABASE_SCHEMES = ("postgres", "postgresql", "sqlite")
# one-api's SQL_DSN without a scheme: user:pass@tcp(host:port)/db?params
_ONE_API_DSN = re.compile(r"^(?:(?P<auth>.*)@)?tcp\((?P<addr>[^)]*)\)/(?P<db>[^?/]+)(?:\?(?P<params>.*))?$")


def envdatabase() -> str | None:
    """The database URL from ``DATABASE_URL`` or its alias ``SQL_DSN``.

    ``SQL_DSN`` also takes one-api's form, ``user:pass@tcp(host:port)/db``,
    read as PostgreSQL (the only database server oneproxy runs on), so a
    one-api deployment's environment carries over once its data is in
    PostgreSQL. Of its query parameters only ``sslmode`` means anything here;
    the MySQL driver's (``charset``, ``parseTime``, ``loc``…) are dropped.
    """
    url = envurl("DATABASE_URL", DATABASE_SCHEMES)
    dsn = _raw("SQL_DSN")
    if dsn is None:
        return url
    dsn = dsn.strip()
    match = _ONE_API_DSN.match(dsn)
    if match is not None:
        host, _, port = match["addr"].rpartition(":") if ":" in match["addr"] else (match["addr"], "", "")
        if port and not port.isdigit():
            raise ImproperlyConfigured(f"SQL_DSN: the port in tcp({match['addr']}) must be a number")
        user, colon, password = (match["auth"] or "").partition(":")
        auth = quote(user, safe="") + (":" + quote(password, safe="") if colon and password else "")
        params = [p for p in (match["params"] or "").split("&") if p.startswith("sslmode=")]
        dsn = f"postgres://{auth}{'@' if auth else ''}{host or '127.0.0.1'}:{port or 5432}/{match['db']}"
        dsn += "?" + "&".join(params) if params else ""
    elif dsn.split("://", 1)[0].lower() not in DATABASE_SCHEMES or "://" not in dsn:
        raise ImproperlyConfigured(
            "SQL_DSN must be a URL starting with one of "
            f"{', '.join(s + '://' for s in DATABASE_SCHEMES)} or one-api's user:pass@tcp(host:port)/db"
        )
    if url is not None and url != dsn:
        raise ImproperlyConfigured("DATABASE_URL and SQL_DSN name different databases: set one of them")
    return dsn


def persistent_secret(name: str, data_dir: Path, make: Callable[[], str]) -> str:
    """The variable's value; otherwise a value generated once into
    ``data_dir/<name>`` (mode 0600), so restarts keep sessions and can still
    decrypt stored provider keys. Never a constant in the repository."""
    value = _raw(name)
    if value is not None:
        return value
    path = data_dir / name.lower()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    generated = make()
    # O_EXCL: two processes starting together must not write different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(generated + "\n")
    return generated


def generated_secret_path(name: str, data_dir: Path) -> Path | None:
    """Where ``persistent_secret`` keeps a generated value; None when the
    environment supplies it."""
    if _raw(name) is not None:
        return None
    return data_dir / name.lower()


def key_beside_data(service_mode: bool, key_file: Path | None, sqlite_path: Path | None) -> str | None:
    """A warning when the encryption key lives in the same directory as the
    data it protects (a copy or backup of that one directory then holds both),
    in service mode, where the key should come from a secret store."""
    if not service_mode or key_file is None:
        return None
    if sqlite_path is not None and sqlite_path.resolve().parent == key_file.resolve().parent:
        where = f"beside the SQLite database {sqlite_path}"
    else:
        where = f"in the data directory {key_file.parent}"
    return (
        f"ONEPROXY_ENCRYPTION_KEY is the generated file {key_file}, {where}: anyone with a copy of that "
        "directory can decrypt the stored provider keys. In service mode set ONEPROXY_ENCRYPTION_KEY (or "
        "ONEPROXY_ENCRYPTION_KEY_FILE) from a secret store and keep it out of database backups."
    )


def new_django_secret() -> str:
    return secrets.token_urlsafe(50)
