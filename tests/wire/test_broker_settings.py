"""A node's Celery app and whoever sends it requests reach the broker alike (wire.rpc.broker_settings)."""

from __future__ import annotations

from wire import rpc
from wire.connection import RedisTarget


def test_a_request_sender_takes_the_broker_settings_a_node_takes() -> None:
    environ = {
        "REDIS_URL": "redis://:s3cret@ignored:6379/2",
        "REDIS_SENTINELS": "10.0.0.1:26379",
        "REDIS_SENTINEL_MASTER": "prod",
    }
    target = RedisTarget.from_env(environ=environ)
    settings = rpc.broker_settings(target)
    assert settings["broker_url"] == target.celery_url()
    assert settings["broker_transport_options"]["master_name"] == "prod"
    sender = rpc.task_sender(target)
    assert {key: sender.conf[key] for key in settings} == settings


def test_a_rediss_broker_gets_tls_options() -> None:
    target = RedisTarget.from_env(environ={"REDIS_URL": "rediss://h:1/0"})
    assert rpc.broker_settings(target)["broker_use_ssl"]
    assert rpc.broker_settings(target, "redis://other:1/0")["broker_use_ssl"] is None
