"""The nodes' own Celery application: a node host needs only its own variables, no Django.

The app hosts the node's loop as a worker bootstep (nodes/worker.py) and one task,
`nodes.request`: how peers and the control plane reach a node (wire/rpc.py). Nodes send
their requests to peers through it too.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import after_setup_logger

from base.env import env_str, redis_tls_options
from wire import rpc
from wire.connection import RedisTarget

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# With REDIS_SENTINELS: kombu's sentinel transport and Celery's sentinel result backend.
REDIS = RedisTarget.from_env(REDIS_URL)
BROKER_URL = env_str("CELERY_BROKER_URL", REDIS.celery_url())
RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS.celery_url())

# No fix-ups: Celery's Django fix-up would set Django up in every node whose environment
# names DJANGO_SETTINGS_MODULE (a shell shared with the control plane, a test run).
app = Celery("nodes", fixups=[])
app.conf.update(
    rpc.broker_settings(REDIS, BROKER_URL),  # the broker, as every sender of requests reaches it
    result_backend=RESULT_BACKEND,
    redis_backend_use_ssl=redis_tls_options(RESULT_BACKEND),  # rediss://
    result_backend_transport_options=REDIS.celery_transport_options(),
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=env_str("LOG_FORMAT", "plain") != "json",
)


@after_setup_logger.connect
def _json_logs(logger: logging.Logger, **_: object) -> None:
    """LOG_FORMAT=json: one JSON object a line, as the control plane logs."""
    if env_str("LOG_FORMAT", "plain") == "json":
        from base.jsonlog import JsonFormatter

        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())
