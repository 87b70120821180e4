"""Django settings for the control plane, read once from the environment (see README)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

from base.env import (
    ConfigError,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    redis_tls_options,
)
from wire.connection import RedisConfigError, RedisTarget

BASE_DIR = Path(__file__).resolve().parent.parent

# Off unless asked for (`make run` turns it on): a forgotten variable must not serve
# tracebacks to the network.
DEBUG = env_bool("DEBUG", False)
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
# Without SECRET_KEY the development key is used, so that tests, management commands and
# the node workers (which sign nothing) start anywhere; the web server itself refuses to
# serve with it unless DEBUG is on (controlplane/wsgi.py).
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY)
if not SECRET_KEY:
    raise ConfigError("SECRET_KEY is empty: set it (or SECRET_KEY_FILE) to a long random value")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS=true when served over TLS (usually a proxy in front of gunicorn that sets
# X-Forwarded-Proto): secure cookies, HSTS, and a redirect of plain HTTP, except for the
# probes and the Prometheus scrape, which stay reachable over plain HTTP inside the network.
HTTPS = env_bool("HTTPS", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", HTTPS)

DATABASE_URL = env_str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/tec_controlplane")
# redis:// or rediss:// (TLS), with the process's Redis user: redis://USER:PASSWORD@host/0
# (`manage.py redis_acl`).
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ConfigError(f"REDIS_URL={REDIS_URL!r}: use redis://, rediss:// (TLS) or unix://")
# REDIS_SENTINELS / REDIS_SENTINEL_MASTER: the primary is found through Sentinel
# (wire/connection.py); every Redis client of the control plane comes from REDIS.
try:
    REDIS = RedisTarget.from_env(REDIS_URL)
except RedisConfigError as error:
    raise ConfigError(str(error)) from None
REDIS_SENTINELS, REDIS_SENTINEL_MASTER = REDIS.sentinels, REDIS.master

# A bounded connection pool per process (psycopg_pool): a burst of API requests waits
# for a connection instead of opening one each and starving the nodes' archives and the
# supervisor on the same server (the no-wedge issue saw 97 of PostgreSQL's 100 taken).
DB_POOL_MAX = env_int("DB_POOL_MAX", 8, minimum=2)
# Requests of the API, the admin and the dashboard served at once per process; more wait
# their turn (up to API_QUEUE_TIMEOUT s, at most API_WAITING_MAX of them, then 503). The
# nodes' heartbeats take no turn: they always find a connection (controlplane/admission.py).
# Two: one process runs Python on one core at a time (the GIL), so more at once adds no
# throughput, only latency for the heartbeats (a burst of 16 readers on 2 cores: heartbeats
# up to 1.2 s old with 4, 0.33 s with 2, the same ~600 answers in 5 s).
API_CONCURRENCY = env_int("API_CONCURRENCY", min(2, DB_POOL_MAX - 1), minimum=1)
if API_CONCURRENCY >= DB_POOL_MAX:
    raise ConfigError(
        f"API_CONCURRENCY={API_CONCURRENCY} leaves none of DB_POOL_MAX={DB_POOL_MAX} database "
        "connections to the nodes' heartbeats: make it smaller than DB_POOL_MAX"
    )
# Under gunicorn (which passes its WEB_THREADS to its workers) a request waiting for its
# turn holds one of the worker's threads: at most so many wait that one stays free for the
# heartbeats; the next is refused at once. Elsewhere (runserver, tests), 64.
WEB_THREADS = env_int("WEB_THREADS", 0, minimum=0)
API_WAITING_MAX = env_int(
    "API_WAITING_MAX", max(0, WEB_THREADS - API_CONCURRENCY - 1) if WEB_THREADS else 64, minimum=0
)
API_QUEUE_TIMEOUT = env_float("API_QUEUE_TIMEOUT", 10.0, minimum=0.01)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
    "min_size": 1,
    "max_size": DB_POOL_MAX,
    "timeout": env_float("DB_POOL_TIMEOUT", 10.0, minimum=0.1),
    "max_idle": 60,
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "controlplane.clusters",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Oversized bodies (413) and NUL in URLs (400) are refused before any view runs.
    "controlplane.middleware.RejectHostileRequests",
    # At most API_CONCURRENCY requests at once; heartbeats and probes take no turn.
    "controlplane.admission.TakeTurns",
    # Static files (admin, Swagger UI) straight from the WSGI process, compressed and cached.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: locks a username out after repeated failed logins.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login lockout (django-axes): after AXES_FAILURE_LIMIT failures for one username from one
# address, that pair is refused for AXES_COOLOFF_MINUTES (admin: `axes_reset` to lift it).
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("AXES_COOLOFF_MINUTES", 15.0, minimum=0.1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env_int("AXES_PROXY_COUNT", 0, minimum=0)

# Throttles need a cache shared by the web processes to be exact: CACHE_URL=redis://...
# (or rediss://); without it each process counts for itself.
CACHE_URL = env_str("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
         "KEY_PREFIX": "tec-cp"}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}  # fmt: skip

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Compressed copies made by collectstatic; names without content hashes, so that a page
# renders whether or not collectstatic has run (tests, a fresh checkout).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# With DEBUG on, or before any collectstatic (tests, a fresh checkout), serve from the
# apps' folders, looked up per request: slower, but no step to forget while developing.
_COLLECTED = STATIC_ROOT.is_dir()
WHITENOISE_USE_FINDERS = DEBUG or not _COLLECTED
WHITENOISE_AUTOREFRESH = DEBUG or not _COLLECTED

# The largest request body (a batch of 10,000 commands is about 1.5 MB): larger gets 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)

REST_FRAMEWORK = {
    # JSON only, checked once for every endpoint (controlplane/clusters/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["controlplane.clusters.api.parsers.StrictJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first so that an API client without credentials gets 401 with a
        # WWW-Authenticate header rather than 403.
        # django-rest-knox: hashed, expiring, revocable (controlplane/clusters/tokens.py).
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.clusters.api.permissions.IsViewerOrOperator"],
    # What a stolen token can do per minute: any request (user), any change (write). Requests
    # without valid credentials are refused (401) before any throttle: a token is 256 random
    # bits, not worth guessing; passwords are guarded by the login lockout below.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "controlplane.clusters.api.permissions.WriteRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("THROTTLE_USER", "3000/min"),
        "write": env_str("THROTTLE_WRITE", "600/min"),
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "controlplane.clusters.api.pagination.Pages",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "controlplane.clusters.api.errors.exception_handler",
}

# API tokens (django-rest-knox): `manage.py token issue USER`, the admin, `make run`'s demo.
API_TOKEN_TTL_HOURS = env_float("API_TOKEN_TTL_HOURS", 24.0 * 30, minimum=0.01)
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Trading Engine Cluster control plane API",
    "DESCRIPTION": (
        "Operators' API: clusters, nodes, role changes, leader assignment. "
        "Authenticate with a token (`Authorization: Token <key>`) or an admin session."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Serve Swagger UI from the sidecar package: operators' networks often have no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Three choice sets are all called "status": name each, so clients get stable types.
    "ENUM_NAME_OVERRIDES": {
        "ClusterStatusEnum": "controlplane.clusters.models.ClusterStatus",
        "NodeStatusEnum": "controlplane.clusters.models.NodeStatus",
        "ReportedNodeStatusEnum": ["starting", "live", "draining"],
        "NodeRoleEnum": "controlplane.clusters.models.NodeRole",
        "OperatorActionKindEnum": "controlplane.clusters.models.OperatorActionKind",
        "OrderStatusEnum": ["open", "partially_filled", "closed"],
        "CommandResultStatusEnum": ["committed", "duplicate", "error"],
    },
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.clusters.api.schema.document_common_errors",
    ],
}

# Celery: the nodes are Celery workers; control messages travel as tasks on Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS.celery_url())
CELERY_BROKER_URL_SET = bool(os.environ.get("CELERY_BROKER_URL"))  # else requests to nodes follow REDIS_URL
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS.celery_url())
CELERY_BROKER_TRANSPORT_OPTIONS = REDIS.celery_transport_options()
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = REDIS.celery_transport_options()
# rediss:// (TLS): Celery needs its options spelled out; redis-py takes them from the URL.
CELERY_BROKER_USE_SSL = redis_tls_options(CELERY_BROKER_URL)
CELERY_REDIS_BACKEND_USE_SSL = redis_tls_options(CELERY_RESULT_BACKEND)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ROUTES = {"controlplane.*": {"queue": "controlplane"}}
# With JSON logs, the workers (supervisor, nodes) keep the LOGGING below instead of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = env_str("LOG_FORMAT", "plain") != "json"
SUPERVISOR_INTERVAL = env_float("SUPERVISOR_INTERVAL", 1.0, minimum=0.1)
CELERY_BEAT_SCHEDULE = {
    "supervise": {"task": "controlplane.supervise", "schedule": SUPERVISOR_INTERVAL},
}

# Defaults for new clusters (each cluster row holds its own values).
CLUSTER_HEARTBEAT_INTERVAL = env_float("CLUSTER_HEARTBEAT_INTERVAL", 0.5, minimum=0.05)
CLUSTER_FAILOVER_TIMEOUT = env_float("CLUSTER_FAILOVER_TIMEOUT", 3.0, minimum=0.2)
# How long a read answered by the leader (an order's status, the book, the latest events)
# waits for it before the API answers 503.
LEADER_READ_TIMEOUT = env_float("LEADER_READ_TIMEOUT", 3.0, minimum=0.05)
# Retention's minimum window: the newest events every archive keeps, whatever its snapshots.
ARCHIVE_KEEP_EVENTS = env_int("ARCHIVE_KEEP_EVENTS", 1_000_000, minimum=0)

# Operations: readiness and the Prometheus scrape (controlplane/health.py, metrics.py).
# The supervisor counts as not running when its last cycle is older than this.
SUPERVISOR_STALE_AFTER = env_float("SUPERVISOR_STALE_AFTER", max(10.0, 5 * SUPERVISOR_INTERVAL), minimum=1.0)
# When set, /metrics asks for `Authorization: Bearer <token>` (Prometheus' bearer_token).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ConfigError(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        # One JSON object a line, with cluster/node/term when the record carries them.
        "json": {"()": "base.jsonlog.JsonFormatter"},
    },
    "filters": {"skip_heartbeats": {"()": "controlplane.logfilters.SkipHeartbeats"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["skip_heartbeats"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
