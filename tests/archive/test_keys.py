"""Keys ready for Redis Cluster: one hash tag per cluster, every script within one slot."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.crc import key_slot

import wire
from archive import FencedWrites, RedisEventPublisher, lower_fence, set_fence
from controlplane.drill.children import Child
from controlplane.drill.servers import free_port, wait_for
from tests.archive.conftest import make_entries
from wire import rpc
from wire.keys import keys


def every_key(cluster: str) -> list[str]:
    cluster_keys = keys(cluster)
    return [
        cluster_keys.events, cluster_keys.fence, cluster_keys.deadletter, cluster_keys.deadletter_counts, cluster_keys.nonces,
        cluster_keys.replay("node-1"), wire.events_key(cluster, 7), wire.commands_key(cluster),
        wire.acks_key(cluster), wire.commit_key(cluster), wire.reply_key(cluster, "client-1"),
        rpc.answer_prefix(cluster) + "0123abcd",
    ]  # fmt: skip


@pytest.mark.parametrize("cluster", ["demo", "drill", "a", "cluster-with-a-long-name_2"])
def test_every_key_of_a_cluster_is_in_one_slot(cluster: str) -> None:
    slots = {key_slot(key.encode()) for key in every_key(cluster)}
    assert slots == {key_slot(cluster.encode())}
    assert all(key.startswith(f"tec:{{{cluster}}}:") for key in every_key(cluster))


def test_clusters_spread_over_slots() -> None:
    assert len({key_slot(keys(f"c{index}").fence.encode()) for index in range(100)}) > 90


@pytest.mark.parametrize("name", ["a{b}", "a}", "{x"])
def test_a_name_with_braces_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="braces"):
        keys(name)


@pytest.fixture
def cluster_mode_redis(tmp_path: Path) -> Iterator[Redis]:
    """A real Redis in cluster mode, one node holding every slot: it refuses any command or
    script whose keys are not all in one slot (CROSSSLOT), as a real Redis Cluster would."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    child = Child(
        "redis-cluster-mode",
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--cluster-enabled", "yes", "--cluster-port", str(free_port()), "--cluster-config-file", str(tmp_path / "nodes.conf"), "--dir", str(tmp_path)],
        tmp_path / "redis.log",
    ).start()  # fmt: skip
    client = Redis(port=port, socket_timeout=5)
    try:
        wait_for(lambda: _pings(client), 20, f"Redis in cluster mode (log {child.log_path})")
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_for(lambda: client.execute_command("CLUSTER", "INFO").decode().find("cluster_state:ok") >= 0,
                 20, "the one-node Redis Cluster to be ok")  # fmt: skip
        yield client
    finally:
        client.close()
        child.stop(timeout=10)


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def test_scripts_touch_one_slot_on_a_redis_cluster(cluster_mode_redis: Redis) -> None:
    redis, cluster = cluster_mode_redis, f"c{uuid.uuid4().hex[:8]}"
    assert set_fence(redis, cluster, 2) == 2
    publisher = RedisEventPublisher(redis, cluster, stream_key=wire.events_key(cluster, 2))
    publisher.publish(2, make_entries(1, 10, term=2))
    replay = RedisEventPublisher(
        redis, cluster, maxlen=0, stream_key=keys(cluster).replay("node-3")
    )
    replay.publish(2, make_entries(1, 5, term=2))
    writes = FencedWrites(redis, cluster)
    commands = wire.commands_key(cluster)
    redis.xgroup_create(commands, wire.LEADER_GROUP, id="0", mkstream=True)
    command_id = redis.xadd(commands, {"r": wire.reply_key(cluster, "c1"), "c": b"x"})
    replies = {wire.reply_key(cluster, f"c{index}"): [b"result"] for index in range(5)}
    assert writes.deliver(2, replies, commands_key=commands, group=wire.LEADER_GROUP,
                          command_ids=[command_id], reply_ttl=60) == ("ok", None)  # fmt: skip
    assert writes.acknowledge(2, wire.acks_key(cluster), {"n": "node-2", "p": 10, "t": 2}) == (
        "ok",
        None,
    )
    assert writes.status(2, wire.commit_key(cluster), {"position": 10}) == ("ok", None)
    assert lower_fence(redis, cluster, 1) == 2
    assert lower_fence(redis, cluster, 1) is None
    # The check is real: keys of two clusters in one script are refused.
    with pytest.raises(Exception, match="hash to the same slot"):
        FencedWrites(redis, cluster).acknowledge(2, wire.acks_key(f"{cluster}x"), {"n": "x"})
