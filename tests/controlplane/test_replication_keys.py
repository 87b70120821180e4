"""Replication keys (controlplane/clusters/replication.py): every node's heartbeat answer
carries them; a rotation's new key signs only after a failover timeout, so no node signs
with a key another does not verify yet; `--now` switches at once. Audited."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from controlplane.clusters import replication, services
from controlplane.clusters.models import OperatorAction, ReplicationKey
from tests.controlplane.test_node_heartbeat import beat

ACTOR = services.Actor("test")
NAMES = itertools.count()


def answer(cluster) -> dict:
    """The `replication` part of the heartbeat answer to a newly registered node."""
    name = f"{cluster.name}-r{next(NAMES)}"
    node, secret = services.register_node(name=name, cluster=cluster, archive_location="postgresql://h/db")
    response = beat(node.name, secret)
    assert response.status_code == 200, response.content
    return response.json()["replication"]


def time_passes(cluster, seconds: float) -> None:
    """As if `seconds` went by: every key of the cluster made that much earlier."""
    ReplicationKey.objects.filter(cluster=cluster).update(created_at=F("created_at") - timedelta(seconds=seconds))


def test_every_node_gets_the_clusters_first_key_and_signs_with_it(cluster):
    first = answer(cluster)
    (key,) = ReplicationKey.objects.filter(cluster=cluster)
    assert first == {"signing": key.key_id, "keys": {key.key_id: key.secret}}
    assert len(bytes.fromhex(key.secret)) == 32
    assert answer(cluster) == first  # made once


def test_a_rotated_key_verifies_at_once_and_signs_after_a_failover_timeout(cluster):
    old = answer(cluster)["signing"]
    new = replication.rotate(cluster.name, actor=ACTOR)
    got = answer(cluster)
    assert got["signing"] == old
    assert set(got["keys"]) == {old, new.key_id}
    time_passes(cluster, cluster.failover_timeout + 1)
    assert answer(cluster)["signing"] == new.key_id
    newest = replication.rotate(cluster.name, actor=ACTOR)  # retires what came before the signing key
    got = answer(cluster)
    assert (got["signing"], set(got["keys"])) == (new.key_id, {new.key_id, newest.key_id})
    assert ReplicationKey.objects.get(key_id=old).retired_at is not None
    assert OperatorAction.objects.filter(cluster=cluster, action="rotate_replication_key").count() == 2


def test_rotate_now_signs_with_the_new_key_and_retires_every_other(cluster):
    old = answer(cluster)["signing"]
    new = replication.rotate(cluster.name, actor=ACTOR, now=True)
    assert answer(cluster) == {"signing": new.key_id, "keys": {new.key_id: new.secret}}
    assert ReplicationKey.objects.get(key_id=old).retired_at is not None


def test_the_command_lists_and_rotates_and_names_a_bad_cluster(cluster, capsys):
    answer(cluster)
    call_command("replication_key", "rotate", cluster.name)
    call_command("replication_key", "list", cluster.name)
    out = capsys.readouterr().out
    assert out.count("live") == 2
    assert "new replication key r-" in out
    assert all(key.secret not in out for key in ReplicationKey.objects.all())
    with pytest.raises(CommandError, match="no cluster named 'nope'"):
        call_command("replication_key", "list", "nope")


def test_the_admin_rotates_without_showing_secrets(cluster, client):
    from django.contrib.auth.models import User

    answer(cluster)
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    done = client.post("/admin/clusters/cluster/", {"action": "rotate_replication_key",
                                                    "_selected_action": [cluster.pk]}, follow=True)  # fmt: skip
    assert b"new replication key r-" in done.content
    assert all(key.secret.encode() not in done.content for key in ReplicationKey.objects.all())
    assert ReplicationKey.objects.filter(cluster=cluster, retired_at__isnull=True).count() == 2
