"""Redis ACLs on a private redis-server (never the shared one): a client credential may add
to the command stream and read its own replies, and nothing else; nodes and the control
plane get the keys they need and no dangerous command."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import redis

import wire
from controlplane import redis_acl
from tests.redis_users import make_users

CLUSTER = "alpha"


@pytest.fixture(scope="module")
def admin_url(tmp_path_factory):
    """A redis-server of this module's own on a free port, stopped by its pid."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis-acl")
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def users(admin_url) -> dict[str, redis.Redis]:
    return {name: redis.Redis.from_url(url) for name, url in make_users(admin_url).items()}


def refused(call) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_a_client_adds_commands_and_reads_its_own_replies(users):
    client = users["tec-client-trader"]
    assert client.ping()
    client.xadd(wire.commands_key(CLUSTER), {"r": "x", "c": b"y"})
    own = wire.reply_key(CLUSTER, "trader-0123abcd")
    users["tec-node"].rpush(own, b"result")
    assert client.blpop([own], timeout=1) == (own.encode(), b"result")
    assert client.lpop(wire.reply_key(CLUSTER, "trader.desk-0123abcd")) is None
    client.hgetall(wire.commit_key(CLUSTER))


@pytest.mark.parametrize(
    "attempt",
    [
        lambda c: c.xadd(wire.acks_key(CLUSTER), {"n": "alpha-2", "p": 99, "t": 1}),  # fake an ack
        lambda c: c.xadd(wire.events_key(CLUSTER, 1), {"x": b"y"}),  # publish an event
        lambda c: c.set(f"tec:{{{CLUSTER}}}:fence", 0),  # move the fence
        lambda c: c.delete(f"tec:{{{CLUSTER}}}:fence"),
        lambda c: c.delete(wire.events_key(CLUSTER, 1)),  # delete a stream
        lambda c: c.delete(wire.commands_key(CLUSTER)),
        lambda c: c.xrange(wire.commands_key(CLUSTER)),  # read other clients' commands
        lambda c: c.lpop(wire.reply_key(CLUSTER, "victim-0123abcd")),  # steal results
        lambda c: c.lpop(wire.reply_key(CLUSTER, "trader-2-0123abcd")),  # a longer name is another client
        lambda c: c.hset(wire.commit_key(CLUSTER), "commit_position", 10**9),
        lambda c: c.publish("anything", "x"),
        lambda c: c.eval("return 1", 0),
        lambda c: c.flushall(),
        lambda c: c.keys("*"),
        lambda c: c.lpush("celery", b"task"),  # a Celery task to a node
    ],
)
def test_a_client_cannot_touch_acks_events_the_fence_or_other_replies(users, attempt):
    assert refused(lambda: attempt(users["tec-client-trader"]))


def test_nodes_and_the_control_plane_work_on_cluster_keys_but_run_nothing_dangerous(users):
    node, control = users["tec-node"], users["tec-controlplane"]
    node.xadd(wire.acks_key(CLUSTER), {"n": "alpha-2", "p": 1, "t": 1})
    node.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, f"tec:{{{CLUSTER}}}:fence", 1)
    node.lpush("celery", b"x")
    control.set(f"tec:{{{CLUSTER}}}:fence", 2)
    control.lpush("unrelated", b"x")
    for connection in (node, control):
        assert refused(connection.flushall)
        assert refused(lambda c=connection: c.config_get("*"))
        assert refused(lambda c=connection: c.acl_list())
    assert refused(lambda: node.set("unrelated", 1))


def test_urls_carry_the_user_and_keep_rediss():
    assert redis_acl.url_for("rediss://cache.example.com:6380/0", "tec-node", "p@ss/w") == (
        "rediss://tec-node:p%40ss%2Fw@cache.example.com:6380/0"
    )


def test_settings_accept_rediss_urls_and_give_celery_tls_options():
    import os
    import sys

    script = (
        "import django, os; django.setup()\n"
        "from django.conf import settings\n"
        "from controlplane.celery import app\n"
        "import nodes.celery_app as nodes_app\n"
        "print(settings.REDIS_URL, app.conf.broker_use_ssl['ssl_cert_reqs'].name,\n"
        "      nodes_app.app.conf.broker_use_ssl['ssl_cert_reqs'].name)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings",
           "REDIS_URL": "rediss://tec-node:pw@cache.example.com:6380/0"}  # fmt: skip
    env.pop("CELERY_BROKER_URL", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["rediss://tec-node:pw@cache.example.com:6380/0", "CERT_REQUIRED", "CERT_REQUIRED"]


def test_the_command_shows_the_users_without_their_passwords(db):
    import io

    from django.core.management import call_command

    from controlplane.clusters.models import TradingClient

    TradingClient.objects.create(name="trader")
    out = io.StringIO()
    call_command("redis_acl", stdout=out)
    text = out.getvalue()
    assert "ACL SETUSER tec-node " in text
    assert "ACL SETUSER tec-client-trader " in text
    assert ">********" in text
