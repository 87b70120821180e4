"""A node's secret is rotated without downtime: the running node re-reads its secret file,
keeps beating, and from its first heartbeat with the new secret the old one is refused."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from controlplane.clusters import services
from controlplane.clusters.models import Node, OperatorAction
from tests.nodes.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def beats_with(node: str, secret: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {secret}")
    report = {"status": "starting", "archived_position": 0, "applied_position": 0}
    return client.post(f"/api/v1/nodes/{node}/heartbeat/", report, format="json").status_code


def test_a_running_node_takes_a_rotated_secret_from_its_file(make_cluster, tmp_path):
    cluster = make_cluster(size=1, write_quorum=0)
    (name,) = cluster.secrets
    old = cluster.secrets[name]
    secret_file = tmp_path / "node.secret"
    secret_file.write_text(old + "\n")
    cluster.start(name, NODE_SECRET="", NODE_SECRET_FILE=str(secret_file))
    cluster.wait_live(name)

    call_command("node_secret", "rotate", name, "--write", str(secret_file), stdout=io.StringIO())
    new = secret_file.read_text().strip()
    assert new != old
    wait_until(lambda: Node.objects.get(name=name).next_credentials_hash == "", 20,
               "the node's first heartbeat with its new secret")  # fmt: skip
    assert Node.objects.get(name=name).credentials_hash == services.hash_node_secret(new)
    beat_after = Node.objects.get(name=name).last_heartbeat
    wait_until(lambda: Node.objects.get(name=name).last_heartbeat > beat_after, 10, "another heartbeat")
    assert cluster.nodes.processes[name].alive()
    assert beats_with(name, old) == 403
    assert OperatorAction.objects.filter(node__name=name, action="rotate_secret").count() == 1


def test_both_secrets_work_until_the_new_one_is_used(make_cluster):
    cluster = make_cluster(size=1, write_quorum=0)
    (name,) = cluster.secrets
    old = cluster.secrets[name]
    out = io.StringIO()
    call_command("node_secret", "rotate", name, stdout=out)
    new = out.getvalue().split()[0]
    assert beats_with(name, old) == 200
    assert beats_with(name, new) == 200
    assert beats_with(name, old) == 403
    assert beats_with(name, new) == 200
