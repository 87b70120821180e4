"""Redis through a plain URL or through Sentinel (wire/connection.py), against real servers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from kombu import Connection

from controlplane.drill.children import stop_all_children
from controlplane.drill.servers import PrivateRedis, PrivateSentinel, wait_for
from wire.connection import RedisConfigError, RedisTarget, parse_sentinels
from wire.redisconn import DirectConnection


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("10.0.0.1:26379", (("10.0.0.1", 26379),)),
        (" a:1 , b:2 ,", (("a", 1), ("b", 2))),
        ("sentinel-host", (("sentinel-host", 26379),)),
        ("[::1]:5000", (("::1", 5000),)),
    ],
)
def test_sentinels_are_parsed(text: str, expected: tuple) -> None:
    assert parse_sentinels(text) == expected


@pytest.mark.parametrize("text", ["a:b", "a:0", ":26379", "a:70000"])
def test_a_bad_sentinel_is_named(text: str) -> None:
    with pytest.raises(RedisConfigError, match="REDIS_SENTINELS"):
        parse_sentinels(text)


def test_without_sentinels_the_url_is_used_as_is() -> None:
    target = RedisTarget.from_env(environ={"REDIS_URL": "redis://h:1/3"})
    assert not target.via_sentinel
    assert target.celery_url() == "redis://h:1/3"
    assert target.celery_transport_options() == {}


def test_with_sentinels_celery_gets_the_sentinel_transport() -> None:
    environ = {
        "REDIS_URL": "redis://:s3cret@ignored:6379/2",
        "REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26380",
        "REDIS_SENTINEL_MASTER": "prod",
    }
    target = RedisTarget.from_env(environ=environ)
    assert target.celery_url() == "sentinel://:s3cret@10.0.0.1:26379;sentinel://:s3cret@10.0.0.2:26380/2"
    assert target.celery_transport_options()["master_name"] == "prod"
    assert "prod" in target.describe()


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[PrivateRedis, PrivateRedis, PrivateSentinel]]:
    """A primary, its replica and one Sentinel (quorum 1), on 127.0.0.1, stopped by pid."""
    primary = PrivateRedis(tmp_path, name="redis-a")
    replica = PrivateRedis(tmp_path, name="redis-b", replica_of=primary.address)
    sentinel = PrivateSentinel(tmp_path, name="sentinel", master="t", primary=primary.address, quorum=1)
    try:
        primary.start()
        replica.start()
        sentinel.start()
        yield primary, replica, sentinel
    finally:
        for server in (sentinel, replica, primary):
            server.stop()
        stop_all_children()


def test_a_client_follows_the_primary_sentinel_promotes(replicated) -> None:
    primary, replica, sentinel = replicated
    target = RedisTarget("redis://unused:1/0", ((sentinel.host, sentinel.port),), "t")
    client = target.client(socket_timeout=2, socket_connect_timeout=2)
    key = f"tec:{{t}}:{uuid.uuid4().hex}"
    client.set(key, "before")
    wait_for(lambda: replica.client().get(key) == b"before", 20, "the replica to copy the key")
    # Celery's broker through kombu's sentinel transport reaches the same primary.
    with Connection(target.celery_url(), transport_options=target.celery_transport_options()) as broker:
        assert broker.default_channel.client.get(key) == b"before"

    primary.child.kill()
    wait_for(lambda: sentinel.primary() == replica.address, 60, "Sentinel to promote the replica")
    deadline = time.monotonic() + 30
    while True:  # the same client object: it asks the Sentinel again on a broken connection
        try:
            assert client.get(key) == b"before"
            client.set(key, "after")
            break
        except redis_lib.ConnectionError:
            assert time.monotonic() < deadline, "the client never reached the new primary"
            time.sleep(0.2)
    assert replica.client().get(key) == b"after"


def test_a_direct_connection_follows_the_primary_sentinel_promotes(replicated) -> None:
    """The hot loops' connections (wire.redisconn) find the primary through the Sentinels
    too, and find the new one after a failover."""
    primary, replica, sentinel = replicated
    target = RedisTarget("redis://unused:1/0", ((sentinel.host, sentinel.port),), "t")
    line = DirectConnection(target.client(socket_timeout=2, socket_connect_timeout=2))
    key = f"tec:{{t}}:{uuid.uuid4().hex}"
    assert line.call("SET", key, "before") == b"OK"
    wait_for(lambda: replica.client().get(key) == b"before", 20, "the replica to copy the key")
    primary.child.kill()
    wait_for(lambda: sentinel.primary() == replica.address, 60, "Sentinel to promote the replica")
    deadline = time.monotonic() + 30
    while True:  # an error drops the connection; the next call asks the Sentinels again
        try:
            assert line.call("GET", key) == b"before"
            break
        except redis_lib.ConnectionError:
            assert time.monotonic() < deadline, "the direct connection never reached the new primary"
            time.sleep(0.2)
    line.close()
