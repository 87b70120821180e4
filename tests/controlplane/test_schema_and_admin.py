"""The OpenAPI document, the docs page, and the admin's pages and leader action."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from openapi_spec_validator import validate

from controlplane.clusters.models import Cluster
from tests.controlplane.reports import report


def test_openapi_schema_is_valid_and_lists_the_api(db, client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    paths = document["paths"]
    assert "/api/v1/clusters/{name}/leader/" in paths
    assert "/api/v1/nodes/" in paths
    force = paths["/api/v1/clusters/{name}/force-leader/"]["post"]
    assert {"200", "400", "409"} <= set(force["responses"])
    assert "/api/v1/nodes/{name}/remove/" in paths
    # The busy answer of the API's turns, everywhere but on the heartbeat (which takes none);
    # where an operation has a 503 of its own (the leader did not answer), it says both.
    assert "busy" in paths["/api/v1/clusters/"]["get"]["responses"]["503"]["description"]
    assert "503" not in paths["/api/v1/nodes/{name}/heartbeat/"]["post"]["responses"]
    assert "busy" in paths["/api/v1/clusters/{name}/book/"]["get"]["responses"]["503"]["description"]
    cluster = document["components"]["schemas"]["Cluster"]["properties"]
    assert {"write_quorum", "tolerance", "status_message", "last_leader"} <= set(cluster)
    assert cluster["tolerance"]["readOnly"]
    assert not cluster["write_quorum"].get("readOnly")


def test_admin_pages_render(cluster, client):
    admin = User.objects.create_superuser("root", password="pw-root-123")
    client.force_login(admin)
    for url in [
        "/admin/",
        "/admin/clusters/cluster/",
        f"/admin/clusters/cluster/{cluster.pk}/change/",
        "/admin/clusters/node/",
        "/admin/clusters/rolechange/",
    ]:
        assert client.get(url).status_code == 200, url


def test_admin_action_makes_a_follower_leader(cluster, client):
    admin = User.objects.create_superuser("root", password="pw-root-123")
    client.force_login(admin)
    follower = cluster.nodes.get(name="alpha-2")
    report("alpha-2", 10, fence_seen=2)  # leader alpha-1 is silent: an election decides
    report("alpha-3", 10, fence_seen=2)
    form = {"action": "make_follower_leader", "_selected_action": [cluster.pk]}
    page = client.post("/admin/clusters/cluster/", form)
    assert page.status_code == 200
    assert b"Make leader" in page.content
    done = client.post(
        "/admin/clusters/cluster/",
        {**form, "apply": "1", "node": follower.pk, "reason": "patching alpha-1", "expected_term": 1},
        follow=True,
    )
    assert b"Done: alpha-2 is now the leader of alpha (term 2)" in done.content
    cluster.refresh_from_db()
    assert (cluster.term, cluster.leader.name) == (2, "alpha-2")
    assert cluster.role_changes.get(term=2).reason.startswith("patching alpha-1: ")


def test_demo_command_creates_three_nodes_and_a_leader(db, tmp_path, settings, capsys):
    from django.core.management import call_command

    from controlplane.clusters.management.commands import demo

    demo.RUN_DIR = tmp_path
    call_command("demo")
    call_command("demo")  # idempotent
    cluster = Cluster.objects.get(name="demo")
    assert cluster.nodes.count() == 3
    assert (cluster.replica_count, cluster.write_quorum, cluster.term_write_quorum) == (2, 1, 1)
    assert cluster.leader.name == "demo-node-1"
    assert cluster.term == 1
    password = (tmp_path / "admin.password").read_text().strip()
    assert User.objects.get(username="admin").check_password(password)
    out = capsys.readouterr().out
    assert password in out
    assert "2 replica(s), write quorum 1: survives 1 node(s) down" in out


def test_demo_command_validates_replicas_and_write_quorum_together(db, tmp_path):
    from django.core.management import CommandError, call_command

    from controlplane.clusters.management.commands import demo

    demo.RUN_DIR = tmp_path
    with pytest.raises(CommandError, match=r"--write-quorum \(W\) must be between 0 and --replica-count \(N = 2\)"):
        call_command("demo", "--write-quorum", "3")
    with pytest.raises(CommandError, match=r"--replica-count \(N\) between 0 and nodes - 1"):
        call_command("demo", "--replica-count", "3")
    assert not Cluster.objects.exists()
    call_command("demo", "--cluster", "wide", "--nodes", "5", "--replica-count", "4")
    assert Cluster.objects.get(name="wide").write_quorum == 2  # the majority of 4


def test_api_docs_page_is_served_without_a_cdn(db, client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"cdn.jsdelivr" not in response.content
