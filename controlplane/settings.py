"""Django settings for the control plane, read once from the environment (see README)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from controlplane.env import ConfigError, env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-secret-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise ConfigError("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = env_str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/tec_controlplane")
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# A bounded connection pool per process (psycopg_pool): a burst of API requests waits
# for a connection instead of opening one each and starving the nodes' archives and the
# supervisor on the same server (the no-wedge issue saw 97 of PostgreSQL's 100 taken).
DB_POOL_MAX = env_int("DB_POOL_MAX", 8, minimum=1)
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
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "controlplane.clusters",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first so that an API client without credentials gets 401 with a
        # WWW-Authenticate header rather than 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.clusters.api.permissions.IsViewerOrOperator"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "controlplane.clusters.api.errors.exception_handler",
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
}

# Celery: the nodes are Celery workers; control messages travel as tasks on Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ROUTES = {"controlplane.*": {"queue": "controlplane"}}
SUPERVISOR_INTERVAL = env_float("SUPERVISOR_INTERVAL", 1.0, minimum=0.1)
CELERY_BEAT_SCHEDULE = {
    "supervise": {"task": "controlplane.supervise", "schedule": SUPERVISOR_INTERVAL},
}

# Defaults for new clusters (each cluster row holds its own values).
CLUSTER_HEARTBEAT_INTERVAL = env_float("CLUSTER_HEARTBEAT_INTERVAL", 0.5, minimum=0.05)
CLUSTER_FAILOVER_TIMEOUT = env_float("CLUSTER_FAILOVER_TIMEOUT", 3.0, minimum=0.2)
CLUSTER_DEFAULT_REPLICA_COUNT = env_int("CLUSTER_DEFAULT_REPLICA_COUNT", 2, minimum=0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"skip_heartbeats": {"()": "controlplane.logfilters.SkipHeartbeats"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["skip_heartbeats"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
