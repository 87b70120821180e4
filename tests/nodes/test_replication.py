"""Leader + followers as real worker processes: every command committed, identical logs."""

from __future__ import annotations

import random
import re

import pytest

import wire
from nodes.celery_app import app as celery_app
from nodes.engine import CancelOrder, OrderAccepted, PlaceOrder, Side
from tests.nodes.conftest import archive_digest, archive_entries, wait_until
from wire import rpc

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def order_flow(client, count: int, seed: int, symbol: str = "ACME") -> list:
    """A seeded mix of resting, crossing and cancel commands."""
    rng = random.Random(seed)
    commands = []
    for _ in range(count):
        if rng.random() < 0.15:
            commands.append(
                CancelOrder(client_id=client.client_id, client_seq=client.next_seq(),
                            account=f"acct{rng.randrange(5)}", order_id=rng.randrange(1, max(2, len(commands))))
            )  # fmt: skip
            continue
        side = rng.choice((Side.BUY, Side.SELL))
        price = 1000 + rng.randrange(-5, 6)
        commands.append(
            PlaceOrder(client_id=client.client_id, client_seq=client.next_seq(),
                       account=f"acct{rng.randrange(5)}", symbol=symbol, side=side,
                       qty=rng.randrange(1, 20), price=price)
        )  # fmt: skip
    return commands


def rebuilt_state(location: str) -> tuple[int, str]:
    """An archive rebuilt as a node does at start-up (snapshot + replay): (position, digest)."""
    from nodes.state import NodeState

    state = NodeState(location)
    try:
        state.recover()
        return state.engine.position, state.engine.digest()
    finally:
        state.close()


def submit_all(client, commands: list, batch: int = 100) -> list:
    ids = [client.send(commands[i : i + batch]) for i in range(0, len(commands), batch)]
    results = []
    for entry_id in ids:
        results.extend(client.wait(entry_id, timeout=30))
    return results


def test_three_nodes_commit_every_command_and_hold_identical_logs(make_cluster):
    cluster = make_cluster(size=3, write_quorum=2)
    names = list(cluster.secrets)
    for name in names:
        cluster.start(name)
    cluster.wait_live(*names)
    client = cluster.client()
    cluster.add_instrument(client)

    commands = order_flow(client, 10_000, seed=1)
    results = submit_all(client, commands)

    assert len(results) == 10_000
    assert all(result.status == wire.RESULT_COMMITTED for result in results)
    assert all(result.events[0].client_seq == cmd.client_seq for result, cmd in zip(results, commands, strict=True))
    last = max(r.first_position + len(r.payloads) - 1 for r in results)
    cluster.wait_applied(last, *names)
    logs = [archive_entries(cluster.locations[name]) for name in names]
    assert len(logs[0]) == last
    assert logs[0] == logs[1] == logs[2]
    digests = {archive_digest(cluster.locations[name]) for name in names}
    assert len(digests) == 1
    hashes = {(cluster.row(n).state_hash_position, cluster.row(n).state_hash) for n in names}
    assert len(hashes) == 1, hashes


def test_late_follower_catches_up_from_the_archive_when_the_stream_was_trimmed(make_cluster):
    # The leader keeps only ~100 events in the live stream: a follower that starts
    # after 5,000 events cannot find its position there and must replay an archive.
    cluster = make_cluster(size=3, write_quorum=1, NODE_STREAM_MAXLEN="100")
    leader, early, late = list(cluster.secrets)
    cluster.start(leader)
    cluster.start(early)
    cluster.wait_live(leader, early)
    client = cluster.client()
    cluster.add_instrument(client)
    submit_all(client, order_flow(client, 5_000, seed=2))
    first, _ = cluster.redis.xrange(wire.events_key(cluster.name, 1), count=1)[0]
    assert int(first.split(b"-")[0]) > 1000  # the stream really was trimmed

    cluster.start(late)
    cluster.wait_live(late)
    results = submit_all(client, order_flow(client, 500, seed=3))
    last = max(r.first_position + len(r.payloads) - 1 for r in results)
    cluster.wait_applied(last, leader, early, late)
    assert "catching up from" in cluster.nodes.processes[late].log_path.read_text()
    logs = [archive_entries(cluster.locations[name]) for name in (leader, early, late)]
    assert logs[0] == logs[1] == logs[2]
    assert archive_digest(cluster.locations[late]) == archive_digest(cluster.locations[leader])


def test_a_follower_down_past_the_old_window_reads_on_from_the_live_stream(make_cluster):
    # The live stream keeps a window in time (NODE_STREAM_WINDOW_S), up to NODE_STREAM_MAXLEN
    # positions (500,000 by default), no longer 20,000 positions: a follower killed while
    # 25,000 commands go by reads on from the stream when it is back, although the leader
    # pruned its own log past the follower's position meanwhile (retention on). The
    # window here is long so that a slow machine's 25,000 commands fit in it.
    from controlplane.clusters.models import Cluster

    cluster = make_cluster(size=3, write_quorum=1, NODE_SNAPSHOT_EVERY="4000", NODE_STREAM_WINDOW_S="600")
    Cluster.objects.filter(name=cluster.name).update(archive_keep_events=1000)
    leader, follower, other = list(cluster.secrets)
    for name in (leader, follower, other):
        cluster.start(name)
    cluster.wait_live(leader, follower, other)
    client = cluster.client()
    cluster.add_instrument(client)
    submit_all(client, order_flow(client, 500, seed=31))
    cluster.nodes.kill(follower)  # SIGKILL, by its pid
    submit_all(client, order_flow(client, 25_000, seed=32))
    wait_until(lambda: not cluster.is_live(follower), 30, "the control plane to see the follower down")
    stopped_at = cluster.row(follower).archived_position
    wait_until(lambda: cluster.row(leader).archived_position - stopped_at > 20_000, 20,
               "the leader to report a position beyond the old window")  # its heartbeat may lag the submits
    wait_until(lambda: cluster.row(leader).archive_first_position > stopped_at + 1, 60,
               lambda: f"the leader to prune past {stopped_at}\n{cluster.nodes.processes[leader].log_tail()}")  # fmt: skip

    cluster.start(follower)
    results = submit_all(client, order_flow(client, 300, seed=33))
    last = max(r.first_position + len(r.payloads) - 1 for r in results)
    cluster.wait_applied(last, leader, follower, other, timeout=90)
    text = cluster.nodes.processes[follower].log_path.read_text()
    assert "catching up from" not in text, text[-3000:]
    assert "INSTALL" not in text, text[-3000:]
    assert rebuilt_state(cluster.locations[follower]) == rebuilt_state(cluster.locations[leader])


def test_commits_wait_for_the_write_quorum_then_fail_clearly(make_cluster):
    from wire.client import NotEnoughReplicas

    cluster = make_cluster(size=3, write_quorum=2)
    leader, follower_a, follower_b = list(cluster.secrets)
    for name in (leader, follower_a, follower_b):
        cluster.start(name)
    cluster.wait_live(leader, follower_a, follower_b)
    client = cluster.client()
    cluster.add_instrument(client)

    cluster.nodes.stop(follower_b)
    order = PlaceOrder(client_id=client.client_id, client_seq=client.next_seq(), account="a",
                       symbol="ACME", side=Side.BUY, qty=5, price=990)  # fmt: skip
    with pytest.raises(NotEnoughReplicas, match="write quorum is 2 but only 1 follower"):
        client.submit(order, timeout=3)

    cluster.start(follower_b)
    cluster.wait_live(follower_b)
    # The command was kept: asking again with the same sequence gets the original result.
    again = client.submit(order, timeout=20)
    assert again.duplicate
    assert isinstance(again.events[0], OrderAccepted)
    assert again.events[0].client_seq == order.client_seq


def test_restarted_node_replays_from_its_snapshot_and_resumes_its_role(make_cluster):
    cluster = make_cluster(size=2, write_quorum=1)
    leader, follower = list(cluster.secrets)
    cluster.start(leader)
    cluster.start(follower)
    cluster.wait_live(leader, follower)
    client = cluster.client()
    cluster.add_instrument(client)
    submit_all(client, order_flow(client, 2_000, seed=4))
    status = rpc.ask(celery_app, cluster.redis, cluster.name, follower, "take_snapshot", timeout=30)
    assert status.startswith("snapshot taken at position")
    assert "in a forked process" in status
    started = re.search(r"snapshot at position \d+ started in process (\d+)", cluster.nodes.processes[follower].log_path.read_text())
    assert started, "the snapshot was not written by a child process"
    assert int(started[1]) != cluster.nodes.processes[follower].pid  # the loop only forked
    submit_all(client, order_flow(client, 500, seed=5))
    before = archive_digest(cluster.locations[follower])

    assert cluster.nodes.stop(follower) == 0  # SIGTERM: a clean exit
    cluster.start(follower)
    cluster.wait_live(follower)
    text = cluster.nodes.processes[follower].log_path.read_text()
    assert "recovered to position" in text
    assert "(snapshot at 0," not in text.rsplit("recovered to position", 1)[1][:80]
    results = submit_all(client, order_flow(client, 300, seed=6))
    last = max(r.first_position + len(r.payloads) - 1 for r in results)
    cluster.wait_applied(last, leader, follower)
    assert archive_entries(cluster.locations[leader]) == archive_entries(cluster.locations[follower])
    assert archive_digest(cluster.locations[follower])[0] > before[0]
    assert cluster.row(follower).state_hash == cluster.row(leader).state_hash


def test_two_clusters_side_by_side_do_not_see_each_others_events(make_cluster):
    red = make_cluster(size=2, write_quorum=1)
    blue = make_cluster(size=2, write_quorum=1)
    for cluster in (red, blue):
        for name in cluster.secrets:
            cluster.start(name)
    for cluster in (red, blue):
        cluster.wait_live(*cluster.secrets)
    red_client, blue_client = red.client(), blue.client()
    red.add_instrument(red_client, "RED")
    blue.add_instrument(blue_client, "BLUE")
    submit_all(red_client, order_flow(red_client, 300, seed=7, symbol="RED"))
    submit_all(blue_client, order_flow(blue_client, 200, seed=8, symbol="BLUE"))
    for cluster, symbol in ((red, b"RED"), (blue, b"BLUE")):
        other = b"BLUE" if symbol == b"RED" else b"RED"
        for name in cluster.secrets:
            entries = archive_entries(cluster.locations[name])
            assert entries, name
            assert all(other not in entry[4] for entry in entries)
    assert red.cluster.term == blue.cluster.term == 1


def test_operators_read_the_book_an_order_and_the_latest_events_through_the_api(make_cluster):
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    cluster = make_cluster(size=2, write_quorum=1)
    cluster.start_all()
    client = cluster.client()
    cluster.add_instrument(client)
    for side, price, qty in ((1, 990, 5), (1, 990, 3), (1, 980, 2), (2, 1010, 4)):
        client.submit(PlaceOrder(client_id=client.client_id, client_seq=client.next_seq(), account="a",
                                 symbol="ACME", side=side, qty=qty, price=price))  # fmt: skip
    api = APIClient()
    api.force_authenticate(User.objects.create_user("reader"))
    base = f"/api/v1/clusters/{cluster.name}"

    book = api.get(f"{base}/book/", {"symbol": "ACME", "levels": 5})
    assert book.status_code == 200, book.content
    assert book.json()["bids"] == [[990, 8, 2], [980, 2, 1]]
    assert book.json()["asks"] == [[1010, 4, 1]]
    assert api.get(f"{base}/book/", {"symbol": "NOPE"}).status_code == 404
    assert set(api.get(f"{base}/book/", {"levels": 0}).json()) == {"symbol", "levels"}

    order = api.get(f"{base}/orders/1/")
    assert order.status_code == 200, order.content
    assert order.json()["order_id"] == 1
    assert api.get(f"{base}/orders/999/").status_code == 404

    events = api.get(f"{base}/events/", {"limit": 3})
    assert events.status_code == 200
    listed = events.json()["events"]
    assert [e["position"] for e in listed] == [3, 4, 5]
    assert listed[-1]["type"] == "order_accepted"
    assert listed[-1]["price"] == 1010


def test_a_node_with_a_wrong_secret_is_refused_and_its_worker_exits(make_cluster):
    cluster = make_cluster(size=2, write_quorum=1)
    name = next(iter(cluster.secrets))
    process = cluster.nodes.start(name, "not-the-secret")
    wait_until(lambda: not process.alive(), 60, lambda: f"the refused worker to exit\n{process.log_tail()}")
    assert process.process.returncode == 78, "a refused node exits with EX_CONFIG, so its runner does not retry"
    log_text = process.log_path.read_text()
    assert f"node {name} refused by the control plane" in log_text
    assert "wrong credentials" in log_text
    assert cluster.row(name).last_heartbeat is None  # nothing it said was stored
