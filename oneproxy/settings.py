"""Django settings, read from the environment (see README "Configuration").

Embedded mode: no REDIS_URL (and SQLite unless DATABASE_URL is set) — one
relay process, Celery on a filesystem broker. Service mode: DATABASE_URL is
PostgreSQL and REDIS_URL is set — any number of relay processes share state
through Redis.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from oneproxy.env import (
    envbool,
    envcidrs,
    envdatabase,
    envint,
    envstr,
    envtoken,
    envurl,
    new_django_secret,
    persistent_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("ONEPROXY_DATA_DIR", str(BASE_DIR / "data"))).resolve()

SECRET_KEY = persistent_secret("SECRET_KEY", DATA_DIR, new_django_secret)
ONEPROXY_ENCRYPTION_KEY = persistent_secret("ONEPROXY_ENCRYPTION_KEY", DATA_DIR, lambda: Fernet.generate_key().decode())
try:
    Fernet(ONEPROXY_ENCRYPTION_KEY)
except ValueError:
    raise ImproperlyConfigured(
        "ONEPROXY_ENCRYPTION_KEY must be a Fernet key (32 url-safe base64-encoded bytes)"
    ) from None

DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = (envstr("ALLOWED_HOSTS", "*") or "*").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in (envstr("CSRF_TRUSTED_ORIGINS", "") or "").split(",") if o]

PORT = envint("PORT", 3000, minimum=1, maximum=65535)
REDIS_URL = envurl("REDIS_URL", ("redis", "rediss", "unix"))
SERVICE_MODE = REDIS_URL is not None
# Relay/web processes of one server (`make run`; uvicorn also reads it by
# itself). Embedded mode's holds and balances live in its one relay process.
WEB_CONCURRENCY = envint("WEB_CONCURRENCY", 1, minimum=1, maximum=64)
if WEB_CONCURRENCY > 1 and not SERVICE_MODE:
    raise ImproperlyConfigured(
        f"WEB_CONCURRENCY={WEB_CONCURRENCY} needs service mode (REDIS_URL and a PostgreSQL DATABASE_URL): "
        "embedded mode runs exactly one relay process"
    )
# Prefix of every Redis key and pub/sub channel oneproxy uses (relay/redis_names.py).
ONEPROXY_REDIS_PREFIX: str = envstr("ONEPROXY_REDIS_PREFIX", "op:")

ONEPROXY_ADMIN_PASSWORD = envstr("ONEPROXY_ADMIN_PASSWORD")
ONEPROXY_ADMIN_ACCESS_TOKEN = envtoken("ONEPROXY_ADMIN_ACCESS_TOKEN")
ONEPROXY_MAX_BODY_BYTES = envint("ONEPROXY_MAX_BODY_BYTES", 32 * 1024 * 1024, minimum=1024)
ONEPROXY_TRUSTED_PROXIES = envcidrs("ONEPROXY_TRUSTED_PROXIES")
# Images fetched by URL for providers that take only inline data (Anthropic):
# the size cap, and networks the fetch may reach although private or loopback.
ONEPROXY_IMAGE_FETCH_MAX_BYTES = envint("ONEPROXY_IMAGE_FETCH_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
ONEPROXY_IMAGE_FETCH_ALLOW_NETWORKS = envcidrs("ONEPROXY_IMAGE_FETCH_ALLOW_NETWORKS")
# Attempts after the first one: another key, then another channel.
ONEPROXY_RETRY_COUNT = envint("ONEPROXY_RETRY_COUNT", 3, minimum=0, maximum=20)
# Completion tokens assumed for a hold when the request sets no max_tokens.
# A request body must arrive within this many seconds (408 after, the
# connection closed); at most this many requests may be receiving one at once.
ONEPROXY_BODY_TIMEOUT_SECONDS = envint("ONEPROXY_BODY_TIMEOUT_SECONDS", 30, minimum=1, maximum=3600)
ONEPROXY_MAX_RECEIVING = envint("ONEPROXY_MAX_RECEIVING", 1024, minimum=1)
# Connect and read timeout of every Redis call the relay makes: a Redis that
# stops answering gets requests a 503 store_unavailable after this long.
ONEPROXY_REDIS_TIMEOUT_MS = envint("ONEPROXY_REDIS_TIMEOUT_MS", 1000, minimum=50, maximum=60000)
# The longest a key cools on an upstream's Retry-After (its value is recorded either way).
ONEPROXY_MAX_COOLDOWN_SECONDS = envint("ONEPROXY_MAX_COOLDOWN_SECONDS", 300, minimum=1, maximum=86400)
ONEPROXY_DEFAULT_MAX_TOKENS = envint("ONEPROXY_DEFAULT_MAX_TOKENS", 4096, minimum=1)
# Unpriced models: charged at the "*" ModelPrice row (default), or refused.
ONEPROXY_REFUSE_UNPRICED = envbool("ONEPROXY_REFUSE_UNPRICED", False)
# Raw usage rows older than this are pruned by billing.prune_usage_logs once
# rolled up; rollups and the ledger keep the history.
ONEPROXY_USAGE_RETENTION_DAYS = envint("ONEPROXY_USAGE_RETENTION_DAYS", 90, minimum=1, maximum=36500)

# Key probes (channels_app.probe_keys): how many upstream requests at once,
# and how long one may take before it counts as a timeout.
ONEPROXY_PROBE_CONCURRENCY = envint("ONEPROXY_PROBE_CONCURRENCY", 16, minimum=1, maximum=256)
ONEPROXY_PROBE_TIMEOUT = envint("ONEPROXY_PROBE_TIMEOUT", 15, minimum=1, maximum=300)

# Operator notifications (channels_app.notify): a key auto-disabled or back,
# a channel or model with no usable key. JSON POSTed to the webhook and/or
# mailed (comma-separated addresses); at most one per key/channel/model and
# kind per interval.
ONEPROXY_NOTIFY_WEBHOOK_URL = envurl("ONEPROXY_NOTIFY_WEBHOOK_URL", ("http", "https"))
ONEPROXY_NOTIFY_EMAILS = [a.strip() for a in (envstr("ONEPROXY_NOTIFY_EMAILS", "") or "").split(",") if a.strip()]
ONEPROXY_NOTIFY_INTERVAL_MINUTES = envint("ONEPROXY_NOTIFY_INTERVAL_MINUTES", 30, minimum=0)

# Outgoing mail (notifications), Django's SMTP backend.
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "") or ""
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10  # a dead mail server must not hold a worker
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "oneproxy@localhost")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_celery_beat",
    "core",
    "billing",
    "channels_app",
    "oneproxy",  # management commands (bootstrap, serve)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "oneproxy.i18n.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "oneproxy.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "oneproxy" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
ASGI_APPLICATION = "oneproxy.asgi.application"


def _databases() -> dict:
    url = envdatabase()
    if url is None:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{DATA_DIR / 'oneproxy.sqlite3'}"
    db = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Persistent: reopening SQLite per batch (and checkpointing the WAL
        # on close) cost the relay ~7x its throughput at one connection.
        db["CONN_MAX_AGE"] = None
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write
        # lock at BEGIN so two writers queue on the busy timeout instead of
        # failing with "database is locked" when a read upgrades to a write.
        db["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
        db["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
    return {"default": db}


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "billing.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# English and Simplified Chinese: the browser's Accept-Language chooses,
# unless the user has set their own (User.language, oneproxy/i18n.py).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The admin's CSS and JS: collected (`manage.py collectstatic`, which `make run`
# and the Docker build run) into STATIC_ROOT with content-hashed names and
# gzip twins, and served by WhiteNoise inside Django with far-future cache
# headers. The relay's paths never reach Django (oneproxy/asgi.py). Beside the
# code, not in DATA_DIR: it is built from the code (a Docker image carries it;
# /data is a volume). With DEBUG on, WhiteNoise serves the apps' own files.
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["billing.authentication.AccessTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "oneproxy.api_errors.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "oneproxy.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Celery: Redis in service mode; in embedded mode kombu's filesystem transport,
# which needs no server and supports remote control (`celery inspect`).
if SERVICE_MODE:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
else:
    _broker = DATA_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://localhost//"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "queue"),
        "data_folder_out": str(_broker / "queue"),
        "processed_folder": str(_broker / "processed"),
        "control_folder": str(_broker / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"  # one-time keys never sit in a cookie
