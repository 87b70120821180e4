"""The write quorum W beside the replica count N: defaults, validation, the one write path."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from controlplane.clusters import services
from controlplane.clusters.models import Cluster
from tests.controlplane.reports import report

ACTOR = services.Actor("test")
URL = "/api/v1/clusters/alpha/"


@pytest.mark.parametrize(("replicas", "quorum"), [(None, 1), (1, 1), (3, 2), (4, 2), (0, 0)])
def test_a_new_cluster_gets_the_majority_write_quorum(db, operator_api, replicas, quorum):
    body = {"name": "gamma"} if replicas is None else {"name": "gamma", "replica_count": replicas}
    response = operator_api.post("/api/v1/clusters/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["write_quorum"] == quorum
    created = Cluster.objects.get(name="gamma")
    assert (created.write_quorum, created.term_write_quorum) == (quorum, quorum)
    assert response.json()["tolerance"] == created.tolerance


def test_a_new_cluster_may_choose_its_write_quorum(db, operator_api):
    body = {"name": "gamma", "replica_count": 3, "write_quorum": 3}
    response = operator_api.post("/api/v1/clusters/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["tolerance"] == (
        "stops trading when any node is down; loses nothing with 3 archive(s) lost"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "gamma", "replica_count": 2, "write_quorum": 3}, "between 0 and the replica count (2)"),
        ({"name": "gamma", "write_quorum": -1}, "greater than or equal to 0"),
        ({"name": "gamma", "write_quorum": "most"}, "valid integer"),
        ({"name": "gamma", "write_quorum": 10**9}, "less than or equal to"),
    ],
)
def test_a_bad_write_quorum_on_create_is_a_400_on_its_field(db, operator_api, body, message):
    response = operator_api.post("/api/v1/clusters/", body, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"write_quorum"}
    assert message in response.json()["write_quorum"][0]
    assert not Cluster.objects.filter(name="gamma").exists()


def test_a_write_quorum_above_the_replica_count_is_a_400_on_its_field(cluster, operator_api):
    response = operator_api.patch(URL, {"write_quorum": 3}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "write_quorum": ["The write quorum must be between 0 and the replica count (2)."]
    }
    both = operator_api.patch(URL, {"replica_count": 1, "write_quorum": 2}, format="json")
    assert both.status_code == 400
    assert "between 0 and the replica count (1)" in both.json()["write_quorum"][0]
    cluster.refresh_from_db()
    assert (cluster.replica_count, cluster.write_quorum) == (2, 1)


def test_raising_replicas_and_write_quorum_together(cluster, operator_api):
    services.register_node(name="alpha-4", cluster=cluster, archive_location="postgresql://h/db4")
    for name in ("alpha-2", "alpha-3", "alpha-4"):
        report(name, 5)
    response = operator_api.patch(URL, {"replica_count": 3, "write_quorum": 3}, format="json")
    assert response.status_code == 200, response.content
    cluster.refresh_from_db()
    assert (cluster.replica_count, cluster.write_quorum) == (3, 3)


def test_a_refused_raise_changes_nothing_else_in_the_request(cluster, operator_api):
    response = operator_api.patch(URL, {"replica_count": 3, "write_quorum": 3}, format="json")
    assert response.status_code == 400
    assert "only 0 follower(s) are live" in response.json()["write_quorum"][0]
    cluster.refresh_from_db()
    assert (cluster.replica_count, cluster.write_quorum) == (2, 1)


def test_set_write_quorum_refuses_with_the_reason_and_logs_who_changed_it(cluster, caplog):
    with pytest.raises(services.NotEligible, match=r"only 0 follower\(s\) are live"):
        services.set_write_quorum(cluster, 2, actor=ACTOR)
    with pytest.raises(services.NotEligible, match="between 0 and the replica count"):
        services.set_write_quorum(cluster, 5, actor=ACTOR)
    assert services.write_quorum_refusal(cluster, 0) is None
    with caplog.at_level(logging.INFO, logger="controlplane.services"):
        services.set_write_quorum(cluster, 0, actor=services.Actor("ops-olga"))
    assert "alpha: write quorum set to 0 by ops-olga" in caplog.text
    cluster.refresh_from_db()
    assert (cluster.write_quorum, cluster.term_write_quorum) == (0, 0)
    assert "commits on the leader alone" in cluster.tolerance


def test_the_api_shows_the_write_quorum_and_what_it_tolerates(cluster, viewer_api):
    body = viewer_api.get(URL).json()
    assert (body["replica_count"], body["write_quorum"]) == (2, 1)
    assert body["tolerance"] == (
        "survives 1 node(s) down without stopping; loses nothing with 1 archive(s) lost"
    )
    assert (body["leader"], body["last_leader"], body["status_message"]) == ("alpha-1", "alpha-1", "")


def test_tolerance_and_status_message_are_read_only(cluster, operator_api):
    response = operator_api.patch(URL, {"tolerance": "all", "status_message": "fine"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"tolerance", "status_message"}


@pytest.fixture
def admin_client(client, cluster):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    return client


def change_form(cluster: Cluster, **values) -> dict:
    form = {
        "name": cluster.name, "replica_count": cluster.replica_count,
        "write_quorum": cluster.write_quorum, "heartbeat_interval": cluster.heartbeat_interval,
        "failover_timeout": cluster.failover_timeout, "lease": cluster.lease,
        "archive_keep_events": cluster.archive_keep_events, "nodes-TOTAL_FORMS": 3, "nodes-INITIAL_FORMS": 3, "nodes-MIN_NUM_FORMS": 0,
        "nodes-MAX_NUM_FORMS": 1000,
    }  # fmt: skip
    for index, node in enumerate(cluster.nodes.order_by("name")):
        form[f"nodes-{index}-id"] = node.pk
        form[f"nodes-{index}-cluster"] = cluster.pk
    return {**form, **values}


def test_admin_form_shows_a_refused_write_quorum_on_its_field(admin_client, cluster):
    url = f"/admin/clusters/cluster/{cluster.pk}/change/"
    page = admin_client.post(url, change_form(cluster, write_quorum=2))
    assert page.status_code == 200  # the form again, with the error
    errors = page.context["adminform"].form.errors
    assert list(errors) == ["write_quorum"]
    assert "only 0 follower(s) are live" in errors["write_quorum"][0]
    page = admin_client.post(url, change_form(cluster, write_quorum=3))
    assert "between 0 and the replica count (2)" in page.context["adminform"].form.errors["write_quorum"][0]
    page = admin_client.post(url, change_form(cluster, replica_count=0))
    assert "Lower the write quorum first" in page.context["adminform"].form.errors["replica_count"][0]
    cluster.refresh_from_db()
    assert (cluster.replica_count, cluster.write_quorum) == (2, 1)


def test_admin_form_changes_replicas_and_write_quorum_through_the_service(admin_client, cluster):
    url = f"/admin/clusters/cluster/{cluster.pk}/change/"
    done = admin_client.post(url, change_form(cluster, replica_count=0, write_quorum=0))
    assert done.status_code == 302, done.context["adminform"].form.errors
    cluster.refresh_from_db()
    assert (cluster.replica_count, cluster.write_quorum, cluster.term_write_quorum) == (0, 0, 0)
    assert cluster.term == 1
    assert cluster.leader.name == "alpha-1"


def test_admin_add_form_leaves_the_majority_as_the_default(admin_client):
    form = {
        "name": "gamma", "replica_count": 3, "write_quorum": "", "heartbeat_interval": 0.5,
        "failover_timeout": 3.0, "lease": 1.5, "archive_keep_events": 1_000_000, "nodes-TOTAL_FORMS": 0, "nodes-INITIAL_FORMS": 0,
        "nodes-MIN_NUM_FORMS": 0, "nodes-MAX_NUM_FORMS": 1000,
    }  # fmt: skip
    done = admin_client.post("/admin/clusters/cluster/add/", form)
    assert done.status_code == 302, done.context["adminform"].form.errors
    created = Cluster.objects.get(name="gamma")
    assert (created.write_quorum, created.term_write_quorum) == (2, 2)


def test_admin_list_and_change_page_show_the_tolerance(admin_client, cluster):
    for url in ("/admin/clusters/cluster/", f"/admin/clusters/cluster/{cluster.pk}/change/"):
        assert "survives 1 node(s) down without stopping" in admin_client.get(url).text


def test_write_quorum_command(cluster, capsys):
    call_command("write_quorum", "alpha", "0")
    assert "alpha: 2 replica(s), write quorum 0: commits on the leader alone" in capsys.readouterr().out
    with pytest.raises(CommandError, match="write quorum not changed: Cannot raise it to 2"):
        call_command("write_quorum", "alpha", "2")
    with pytest.raises(CommandError, match="no cluster named 'nope'"):
        call_command("write_quorum", "nope", "1")
    call_command("write_quorum", "alpha")
    assert "write quorum 0" in capsys.readouterr().out
