"""The cluster survives its leader: failover, fencing, rejoin, catch-up, lost Redis, switchover."""

from __future__ import annotations

import signal
import time

import pytest

from controlplane.clusters.models import RoleChange
from tests.nodes.conftest import (
    SteadyLoad,
    archive_digest,
    archive_entries,
    assert_each_committed_command_once,
    first_commit_of_term,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def new_leader(cluster, old: str, timeout: float) -> str:
    def changed():
        leader = cluster.cluster.leader
        return leader.name if leader and leader.name != old else None

    return wait_until(changed, timeout, f"a leader other than {old}")


def test_sigkill_of_the_leader_under_load_elects_a_follower_and_loses_nothing(make_cluster, supervisor):
    cluster = make_cluster(size=3, write_quorum=1)
    old, a, b = cluster.start_all()
    cluster.add_instrument(cluster.client())
    load = SteadyLoad(cluster).start()
    load.wait_for(300)

    killed_at = time.monotonic()
    cluster.nodes.kill(old)
    leader = new_leader(cluster, old, timeout=2.0 + 0.2 + 3.0)
    elected_after = time.monotonic() - killed_at
    committed_then = len(load.committed)
    load.wait_for(committed_then + 300, timeout=30)
    load.stop()
    first_commit_after = first_commit_of_term(load, cluster.locations[leader], 2) - killed_at

    change = RoleChange.objects.get(cluster__name=cluster.name, term=2)
    assert change.actor == "supervisor"
    assert f"leader {old} silent for" in change.reason
    survivors = [leader, a if leader == b else b]
    last = max(r.first_position for r in load.committed.values())
    cluster.wait_applied(last, *survivors)
    assert archive_entries(cluster.locations[survivors[0]]) == archive_entries(cluster.locations[survivors[1]])
    assert archive_digest(cluster.locations[survivors[0]]) == archive_digest(cluster.locations[survivors[1]])
    assert_each_committed_command_once(load, cluster.locations[leader])
    print(
        f"\nFAILOVER (failover timeout 2.0 s, heartbeat 0.2 s, supervisor period 0.2 s): "
        f"new leader elected {elected_after:.2f} s after SIGKILL, first committed result "
        f"from it {first_commit_after:.2f} s after SIGKILL"
    )


def test_frozen_leader_is_fenced_steps_down_and_truncates_its_uncommitted_tail(make_cluster, supervisor):
    cluster = make_cluster(size=3, write_quorum=1)
    old, _a, _b = cluster.start_all()
    cluster.add_instrument(cluster.client())
    load = SteadyLoad(cluster).start()
    load.wait_for(200)

    cluster.nodes.signal(old, signal.SIGSTOP)
    leader = new_leader(cluster, old, timeout=10)
    load.wait_for(len(load.committed) + 200, timeout=30)
    cluster.nodes.signal(old, signal.SIGCONT)
    # The old leader wakes up believing it leads term 1: its publishes are refused, it
    # learns the new term, truncates what it archived alone, and follows.
    wait_until(lambda: cluster.row(old).role == "follower" and cluster.is_live(old), 30, f"{old} to follow")
    load.wait_for(len(load.committed) + 200, timeout=30)
    load.stop()
    last = max(r.first_position for r in load.committed.values())
    cluster.wait_applied(last, leader, old)
    wait_until(
        lambda: archive_entries(cluster.locations[old]) == archive_entries(cluster.locations[leader]),
        20, "the old leader's log to equal the new leader's",
    )  # fmt: skip
    assert archive_digest(cluster.locations[old]) == archive_digest(cluster.locations[leader])
    assert_each_committed_command_once(load, cluster.locations[leader])
    # Nothing the frozen leader did after waking reached the new term's stream.
    import wire

    for _id, fields in cluster.redis.xrange(wire.events_key(cluster.name, 2)):
        assert int(fields[b"term"]) == 2


def test_killed_follower_rejoins_from_the_archive_after_the_stream_moved_on(make_cluster, supervisor):
    cluster = make_cluster(size=3, write_quorum=1, NODE_STREAM_MAXLEN="200")
    leader, a, b = cluster.start_all()
    cluster.add_instrument(cluster.client())
    load = SteadyLoad(cluster, batch=50).start()
    load.wait_for(200)
    cluster.nodes.kill(b)
    stopped_at = cluster.row(b).archived_position
    load.wait_for(len(load.committed) + 2000, timeout=60)
    cluster.start(b)
    cluster.wait_live(b)
    load.wait_for(len(load.committed) + 200, timeout=30)
    load.stop()
    last = max(r.first_position for r in load.committed.values())
    cluster.wait_applied(last, leader, a, b)
    assert last - stopped_at > 200  # the stream no longer held what b needed
    assert "catching up from" in cluster.nodes.processes[b].log_path.read_text()
    assert archive_entries(cluster.locations[b]) == archive_entries(cluster.locations[leader])
    assert_each_committed_command_once(load, cluster.locations[leader])


def test_losing_every_stream_in_redis_under_load_loses_no_committed_command(
    private_redis, make_cluster, supervisor
):
    cluster = make_cluster(size=3, write_quorum=1)
    leader, a, b = cluster.start_all()
    cluster.add_instrument(cluster.client())
    load = SteadyLoad(cluster).start()
    load.wait_for(300)
    before = len(load.committed)
    cluster.redis.flushall()  # the fence, the streams, the consumer group, the replies
    load.wait_for(before + 500, timeout=60)
    load.stop()
    last = max(r.first_position for r in load.committed.values())
    current = cluster.cluster.leader.name
    cluster.wait_applied(last, leader, a, b)
    logs = [archive_entries(cluster.locations[name]) for name in (leader, a, b)]
    assert logs[0] == logs[1] == logs[2]
    assert_each_committed_command_once(load, cluster.locations[current])
    # What the flush took was rebuilt: the fence (from the control plane's table) and the
    # command stream's consumer group (by the leader).
    import wire
    from archive import get_fence

    assert get_fence(cluster.redis, cluster.name) == 1
    groups = cluster.redis.xinfo_groups(wire.commands_key(cluster.name))
    assert [group["name"] for group in groups] == [wire.LEADER_GROUP.encode()]


def test_twenty_concurrent_switchovers_one_succeeds(make_cluster, live_server):
    import json
    import threading
    import urllib.error
    import urllib.request

    from django.contrib.auth.models import Group, User

    from controlplane.clusters import tokens

    cluster = make_cluster(size=3, write_quorum=1)
    leader, a, b = cluster.start_all()
    client = cluster.client()
    cluster.add_instrument(client)
    operator = User.objects.create_user("olga")
    operator.groups.add(Group.objects.get(name="operators"))
    token = tokens.issue(operator.username).token
    codes: list[int] = []

    def request(target: str) -> None:
        body = {"node": target, "expected_leader": leader, "expected_term": 1, "timeout": 10}
        req = urllib.request.Request(
            f"{live_server.url}/api/v1/clusters/{cluster.name}/switchover/",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                codes.append(response.status)
        except urllib.error.HTTPError as error:
            codes.append(error.code)

    threads = [threading.Thread(target=request, args=((a, b)[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(codes).count(200) == 1, codes
    assert set(codes) <= {200, 409, 412}, codes
    assert cluster.cluster.term == 2
    assert RoleChange.objects.filter(cluster__name=cluster.name).count() == 2
    new = cluster.cluster.leader.name
    assert new in (a, b)
    # The cluster goes on committing under its new leader; the old one follows.
    wait_until(lambda: cluster.row(leader).role == "follower", 10, "the old leader to follow")
    from nodes.engine import PlaceOrder

    result = client.submit(
        PlaceOrder(client_id=client.client_id, client_seq=client.next_seq(), account="z",
                   symbol="ACME", side=1, qty=1, price=1000),
        timeout=20,
    )  # fmt: skip
    assert result.events[0].__class__.__name__ == "OrderAccepted"
