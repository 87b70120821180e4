"""The one write path for leadership: term bump, single leader, audit row."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.db import connection

from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node, NodeRole, RoleChange

ACTOR = services.Actor("test")


def roles(cluster: Cluster) -> dict[str, str]:
    return dict(cluster.nodes.values_list("name", "role"))


def test_assign_leader_bumps_term_and_demotes_everyone_else(cluster):
    change = services.assign_leader(cluster, "alpha-2", actor=ACTOR, reason="planned")
    cluster.refresh_from_db()
    assert cluster.term == 2
    assert cluster.leader.name == "alpha-2"
    assert roles(cluster) == {"alpha-1": "follower", "alpha-2": "leader", "alpha-3": "follower"}
    assert (change.term, change.old_leader.name, change.new_leader.name) == (2, "alpha-1", "alpha-2")
    assert (change.reason, change.actor) == ("planned", "test")


def test_expected_term_makes_it_compare_and_set(cluster):
    with pytest.raises(services.StaleExpectation, match="at term 1, not 0"):
        services.assign_leader(cluster, "alpha-2", actor=ACTOR, reason="x", expected_term=0)
    cluster.refresh_from_db()
    assert cluster.term == 1
    assert cluster.leader.name == "alpha-1"


def test_node_of_another_cluster_is_refused_and_nothing_changes(cluster):
    other = Cluster.objects.create(name="beta")
    services.register_node(name="beta-1", cluster=other, archive_location="postgresql://x/y")
    with pytest.raises(services.NotInCluster, match="beta-1 is not a node of cluster alpha"):
        services.assign_leader(cluster, "beta-1", actor=ACTOR, reason="x")
    with pytest.raises(services.NotInCluster):
        services.assign_leader(cluster, "no-such-node", actor=ACTOR, reason="x")
    cluster.refresh_from_db()
    assert cluster.term == 1
    assert RoleChange.objects.filter(cluster=cluster).count() == 1


def test_node_credentials_are_checked_against_a_hash(cluster):
    node, secret = services.register_node(
        name="alpha-4", cluster=cluster, archive_location="postgresql://x/y"
    )
    assert secret not in node.credentials_hash
    assert services.check_node_credentials(node, secret)
    assert not services.check_node_credentials(node, secret + "x")


@pytest.mark.django_db(transaction=True)
def test_concurrent_assignments_never_give_two_leaders_in_one_term():
    cluster = Cluster.objects.create(name="race")
    names = [f"race-{index}" for index in range(4)]
    for name in names:
        services.register_node(name=name, cluster=cluster, archive_location="postgresql://x/y")
    rounds, workers = 5, 4
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def assign_many(worker: int) -> None:
        try:
            for round_ in range(rounds):
                barrier.wait()
                target = names[(worker + round_) % len(names)]
                services.assign_leader("race", target, actor=ACTOR, reason=f"w{worker} r{round_}")
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)
        finally:
            connection.close()  # each thread has its own database connection

    threads = [threading.Thread(target=assign_many, args=(worker,)) for worker in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    cluster.refresh_from_db()
    assert cluster.term == rounds * workers
    terms = list(RoleChange.objects.filter(cluster=cluster).values_list("term", flat=True))
    assert sorted(terms) == list(range(1, rounds * workers + 1))
    leaders = Node.objects.filter(cluster=cluster, role=NodeRole.LEADER)
    assert [node.pk for node in leaders] == [cluster.leader_id]
    last = RoleChange.objects.get(cluster=cluster, term=cluster.term)
    assert last.new_leader_id == cluster.leader_id
    # Each audit row's old leader is the previous row's new leader: no lost update.
    chain = list(RoleChange.objects.filter(cluster=cluster).order_by("term"))
    for before, after in itertools.pairwise(chain):
        assert after.old_leader_id == before.new_leader_id
