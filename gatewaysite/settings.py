"""Settings, read from the environment in this one place.

With nothing set, the gateway runs as the embedded demo: SQLite, no Redis, DEBUG on, development
secrets. With DEBUG off, SECRET_KEY and FIELD_ENCRYPTION_KEYS must be given: startup stops with a
clear message instead of falling back to a default.
"""

import os
from pathlib import Path

import environ
from celery.schedules import crontab
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG: bool = env.bool("DEBUG", default=True)

# Development-only fallbacks: never used when DEBUG is off.
_DEMO_SECRET_KEY = "demo-insecure-secret-key-do-not-use-in-production"
_DEMO_FIELD_KEY = "ZGVtby1pbnNlY3VyZS1maWVsZC1rZXktMzItYnl0ZXM="  # base64 of a 32-byte demo key


def _required_in_production(name: str, demo_value: str) -> str:
    value: str = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return demo_value
    raise ImproperlyConfigured(
        f"{name} is not set. With DEBUG off the gateway refuses to start on a default {name}: "
        f"set it in the environment (see README, 'Configuration')."
    )


SECRET_KEY = _required_in_production("SECRET_KEY", _DEMO_SECRET_KEY)
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation: prepend a new key, then
# run `manage.py rotate_encryption_keys`).
FIELD_ENCRYPTION_KEYS: list[str] = [
    k.strip() for k in _required_in_production("FIELD_ENCRYPTION_KEYS", _DEMO_FIELD_KEY).split(",") if k.strip()
]

for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key.encode())
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes; "
            "make one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)."
        ) from None

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["*"] if DEBUG else ["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_ratelimit",
    "routes",
    "usage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "routes.audit.AuditActorMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gatewaysite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

WSGI_APPLICATION = "gatewaysite.wsgi.application"
ASGI_APPLICATION = "gatewaysite.asgi.application"

_database_url = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": environ.Env.db_url_config(_database_url)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The serving half writes usage from a worker thread while the admin writes too.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20,
        # WAL and immediate transactions: readers never block the writer, and two writers wait for
        # each other instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })
    # A file, not memory, so an end-to-end test's server process sees the test database; one per
    # test run, so two runs in one checkout never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test_db_{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # One test database per test run, so two runs against one server never drop each other's.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# Empty means "no Redis": the embedded demo (in-process snapshot invalidation, direct usage writes).
REDIS_URL: str = env.str("REDIS_URL", default="")

_CACHE_PREFIX = env.str("CACHE_KEY_PREFIX", default="gw")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": _CACHE_PREFIX}}
    # django-ratelimit lists django-redis, not Django's own RedisCache, whose incr is atomic too.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": _CACHE_PREFIX}}
    # Without Redis the demo is one process, so a per-process cache is the shared one.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# django-ratelimit on the human-facing surfaces (admin login, key issuance); 429 when exceeded.
RATELIMIT_VIEW = "routes.views.ratelimited"
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
ADMIN_LOGIN_RATE = env.str("GATEWAY_ADMIN_LOGIN_RATE", default="10/m")
KEY_ISSUE_RATE = env.str("GATEWAY_KEY_ISSUE_RATE", default="30/h")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["routes.api.authentication.GatewayKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "routes.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "LLM governance gateway",
    "DESCRIPTION": "Routes, keys, limits and usage; serving endpoints for the MLflow and OpenAI API families.",
    "VERSION": "0.1.0",
    # 3.1: JSON Schema 2020-12, the dialect of the serving half's pydantic schemas.
    "OAS_VERSION": "3.1.0",
    # Swagger UI served from our own static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "routes.api.openapi.add_serving_paths",
    ],
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL and env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# One queue name per deployment (the test suite gives each run its own, so runs sharing a Redis never
# execute each other's tasks).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")

# ---- Serving half
GATEWAY = {
    # Largest request body the serving endpoints accept (bytes); larger → 413.
    "MAX_BODY_BYTES": env.int("GATEWAY_MAX_BODY_BYTES", default=1_048_576),
    # How often each process checks whether routes/keys changed (seconds); changes are seen within
    # twice this.
    "SNAPSHOT_POLL_SECONDS": env.float("GATEWAY_SNAPSHOT_POLL_SECONDS", default=1.0),
    # Default total upstream timeout (seconds) for a route that sets none.
    "UPSTREAM_TIMEOUT_SECONDS": env.float("GATEWAY_UPSTREAM_TIMEOUT_SECONDS", default=60.0),
    # A streamed answer may take this long in all; UPSTREAM_TIMEOUT_SECONDS bounds each wait for a chunk.
    "STREAM_TIMEOUT_SECONDS": env.float("GATEWAY_STREAM_TIMEOUT_SECONDS", default=600.0),
    "UPSTREAM_CONNECT_TIMEOUT_SECONDS": env.float("GATEWAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS", default=10.0),
    # Usage records are written in batches by a background task every this many seconds.
    "USAGE_FLUSH_SECONDS": env.float("GATEWAY_USAGE_FLUSH_SECONDS", default=0.5),
    # Public base URL used to build route_url / endpoint_url (empty: from the request).
    "PUBLIC_URL": env.str("GATEWAY_PUBLIC_URL", default=""),
    "PAGE_SIZE": env.int("GATEWAY_PAGE_SIZE", default=50),
    # ---- Usage pipeline (usage/): see README, "Usage, costs and dashboards".
    # How often each serving process checks the ModelPrice table for changes (seconds).
    "PRICE_REFRESH_SECONDS": env.float("GATEWAY_PRICE_REFRESH_SECONDS", default=10.0),
    # The Redis stream the serving processes append usage events to, and the drain's consumer group.
    "USAGE_STREAM": env.str("GATEWAY_USAGE_STREAM", default="gateway:usage:events"),
    "USAGE_STREAM_GROUP": env.str("GATEWAY_USAGE_STREAM_GROUP", default="usage-drain"),
    # Events per drain batch (one transaction, one acknowledgement).
    "USAGE_DRAIN_BATCH": env.int("GATEWAY_USAGE_DRAIN_BATCH", default=500),
    # One drain run stops after this long; the next run continues.
    "USAGE_DRAIN_MAX_SECONDS": env.float("GATEWAY_USAGE_DRAIN_MAX_SECONDS", default=20.0),
    # Entries read but not acknowledged for this long (their worker died) are delivered again.
    # Longer than a batch ever takes to commit.
    "USAGE_CLAIM_IDLE_SECONDS": env.float("GATEWAY_USAGE_CLAIM_IDLE_SECONDS", default=30.0),
    # Beat's safety-net drain interval (serving processes also ask for a drain right after appending).
    "USAGE_DRAIN_SECONDS": env.float("GATEWAY_USAGE_DRAIN_SECONDS", default=10.0),
    # How often beat rolls events into the hourly and daily aggregates.
    "USAGE_ROLLUP_MINUTES": env.int("GATEWAY_USAGE_ROLLUP_MINUTES", default=10),
    # Raw events older than this many days are deleted once rolled up (0: keep for ever); aggregates stay.
    "USAGE_RETENTION_DAYS": env.int("GATEWAY_USAGE_RETENTION_DAYS", default=90),
    # A serving process that cannot reach Redis this long writes its buffered events to the database.
    "USAGE_REDIS_FALLBACK_SECONDS": env.float("GATEWAY_USAGE_REDIS_FALLBACK_SECONDS", default=5.0),
    # Limits: what a Redis outage does ("closed": 503 for every limited call; "open": calls go through
    # unlimited, logged as errors), how long the limiter waits for Redis, where its counters live.
    "LIMITS_FAIL_MODE": env.str("GATEWAY_LIMITS_FAIL_MODE", default="closed"),
    "LIMITS_REDIS_TIMEOUT_SECONDS": env.float("GATEWAY_LIMITS_REDIS_TIMEOUT_SECONDS", default=0.5),
    "LIMITS_KEY_PREFIX": env.str("GATEWAY_LIMITS_KEY_PREFIX", default="gw:lim:"),
    # Output tokens a request without max_tokens is capped at (and reserves) when a token or money
    # limit applies to it and its route sets no default cap.
    "DEFAULT_MAX_TOKENS": env.int("GATEWAY_DEFAULT_MAX_TOKENS", default=4096),
}
if GATEWAY["LIMITS_FAIL_MODE"] not in ("closed", "open"):
    raise ImproperlyConfigured("GATEWAY_LIMITS_FAIL_MODE must be 'closed' or 'open'.")

# Celery beat (django-celery-beat copies these into its database schedule at start).
CELERY_BEAT_SCHEDULE = {
    "usage-drain": {
        "task": "usage.drain_stream",
        "schedule": GATEWAY["USAGE_DRAIN_SECONDS"],
        "options": {"expires": GATEWAY["USAGE_DRAIN_SECONDS"] * 3},
    },
    "usage-rollup": {"task": "usage.rollup", "schedule": GATEWAY["USAGE_ROLLUP_MINUTES"] * 60.0},
    "usage-prune": {"task": "usage.prune", "schedule": crontab(hour=3, minute=17)},
}

# Dashboards (usage/): Django auth's login.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/usage/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # httpx logs every request at INFO: one line per upstream call is noise (and work) on the hot path.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
