"""Acks and live-stream entries carry an HMAC with the cluster's replication key: a process
that can write to Redis (what a stolen node or control-plane credential gives) forges,
replays or re-signs them with a wrong key, and nothing changes: the commit position does
not move, followers apply nothing forged and still converge to the leader's digest, and
every refusal is counted (the node's metrics, the dead-letter counts). Real processes."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import wire
from archive import streamformat
from archive.deadletter import dead_letter_counts
from archive.entries import LogEntry
from nodes.engine import PlaceOrder, Side
from tests.nodes.conftest import archive_digest, archive_entries, wait_until
from wire import signing
from wire.client import CommitTimeout

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rejected(port: int) -> dict[str, float]:
    """The node's tec_node_rejected_entries counters, by 'stream.reason'."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        f"{sample.labels['stream']}.{sample.labels['reason']}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tec_node_rejected_entries_total"
    }


def commit_position(cluster) -> int:
    return int(cluster.redis.hget(wire.commit_key(cluster.name), "commit_position") or 0)


def order(client, seq: int | None = None) -> PlaceOrder:
    return PlaceOrder(client_id=client.client_id, client_seq=seq or client.next_seq(), account="a1",
                      symbol="ACME", side=Side.BUY, qty=1, price=100)  # fmt: skip


def test_forged_unsigned_and_replayed_acks_do_not_move_the_commit(make_cluster):
    cluster = make_cluster(size=3, write_quorum=2)  # a commit needs both followers
    port = free_port()
    leader, follower, other = cluster.secrets
    cluster.start(leader, NODE_METRICS_PORT=str(port))
    cluster.start(follower)
    cluster.start(other)
    cluster.wait_live(leader, follower, other)
    client = cluster.client(timeout=15)
    cluster.add_instrument(client)
    placed = client.submit(order(client))
    placed_at = placed.first_position + len(placed.payloads) - 1
    acks_key = wire.acks_key(cluster.name)
    genuine = next(fields for _, fields in cluster.redis.xrevrange(acks_key, count=50) if fields[b"n"] == other.encode())
    assert {b"k", b"q", b"s"} <= set(genuine)  # signed by the follower
    archive_id = genuine[b"a"].decode()
    term = int(genuine[b"t"])

    cluster.nodes.kill(other)  # from now on only forged acks of `other` could commit
    def settled() -> int | None:  # the commit hash says everything archived is committed
        status = cluster.redis.hgetall(wire.commit_key(cluster.name))
        position = int(status.get(b"commit_position", 0))
        # At least the order placed above: the hash may still show an earlier commit.
        return position if position >= placed_at and position == int(status.get(b"leader_position", -1)) else None

    committed = wait_until(settled, 10, "the commit position to reach the leader's")
    pending = client.send([order(client)])
    wait_until(lambda: cluster.row(leader).archived_position > committed, 20, "the leader to archive the order")
    target = cluster.row(leader).archived_position

    def forge(**fields) -> None:
        cluster.redis.xadd(acks_key, {"n": other, "p": target, "t": term, "a": archive_id, **fields})

    forge()  # unsigned
    wrong = bytes(32)
    forge(q=10**19, k=genuine[b"k"], s=signing.ack_mac(wrong, cluster.name, other, target, term, archive_id, 10**19, genuine[b"k"].decode()))
    forge(q=10**19, k="r-nosuchkey", s=bytes(32))
    cluster.redis.xadd(acks_key, genuine)  # a genuine ack replayed: its nonce is not new
    cluster.redis.xadd(acks_key, {**genuine, b"p": str(target).encode()})  # its MAC no longer holds
    wanted = {"acks.unsigned": 1, "acks.bad_signature": 2, "acks.unknown_key": 1, "acks.replayed": 1}
    wait_until(lambda: all(rejected(port).get(name, 0) >= count for name, count in wanted.items()), 20,
               lambda: f"the leader to count the forged acks, has {rejected(port)}")  # fmt: skip
    counts = dead_letter_counts(cluster.redis, cluster.name)
    assert all(counts.get(name, 0) >= count for name, count in wanted.items()), counts
    # The forged acks said `other` holds the order: the leader did not believe them.
    assert commit_position(cluster) == committed
    with pytest.raises(CommitTimeout):  # its result was not delivered either
        client.wait_any([pending], timeout=1.0, give_up=False)

    cluster.start(other)  # the real follower comes back and acknowledges: now it commits
    wait_until(lambda: commit_position(cluster) >= target, 30, "the order to commit once the follower is back")
    (result,) = client.wait(pending)
    # A leader that rebuilt meanwhile (a lease lost on a busy machine) answers the same
    # entry again as a duplicate, with the original result.
    assert result.status in (wire.RESULT_COMMITTED, wire.RESULT_DUPLICATE)
    assert committed < result.first_position <= target


def test_followers_apply_no_forged_entry_and_converge_to_the_leader(make_cluster):
    cluster = make_cluster(size=3, write_quorum=1)
    ports = {name: free_port() for name in cluster.secrets}
    leader, *followers = cluster.secrets
    for name, port in ports.items():
        cluster.start(name, NODE_METRICS_PORT=str(port))
    cluster.wait_live(*ports)
    client = cluster.client(timeout=15)
    cluster.add_instrument(client)
    for _ in range(3):
        client.submit(order(client))
    term = cluster.cluster.term
    stream = wire.events_key(cluster.name, term)
    last_id, last = cluster.redis.xrevrange(stream, count=1)[0]
    position = streamformat.position_of(last_id)
    assert position >= 4  # the instrument and three orders
    cluster.wait_applied(position, *followers)
    assert {b"k", b"s"} <= set(last)  # signed by the leader
    # An event the leader never wrote: a copy of the first one (the instrument) at the next position.
    first_event = archive_entries(cluster.locations[leader])[0]
    forged = LogEntry(position + 1, term, first_event[2], first_event[3], first_event[4])
    batch = {b"term": str(term).encode(), b"first": str(position + 1).encode(), b"events": streamformat.encode_events([forged])}
    cluster.redis.xadd(stream, {**last}, id=f"{position}-1")  # a genuine entry replayed under another id
    cluster.redis.xadd(stream, batch, id=f"{position + 1}-0")  # unsigned
    signature = streamformat.entry_mac(bytes(32), stream, f"{position + 1}-1", batch[b"term"], batch[b"first"], batch[b"events"])
    cluster.redis.xadd(stream, {**batch, b"k": last[b"k"], b"s": signature}, id=f"{position + 1}-1")  # wrong key
    cluster.redis.xadd(stream, {**batch, b"k": b"r-forger", b"s": signature}, id=f"{position + 1}-2")  # unknown key

    wanted = {"events.replayed": 1, "events.unsigned": 1, "events.bad_signature": 1, "events.unknown_key": 1}
    for name in followers:
        wait_until(lambda name=name: all(rejected(ports[name]).get(k, 0) >= v for k, v in wanted.items()), 20,
                   lambda name=name: f"{name} to count the forged entries, has {rejected(ports[name])}")  # fmt: skip
    counts = dead_letter_counts(cluster.redis, cluster.name)
    assert all(counts.get(name, 0) >= 2 * count for name, count in wanted.items()), counts
    for name in followers:
        assert cluster.row(name).archived_position == position  # nothing forged archived

    # The leader goes on (its next publish may collide with the forged ids once and be
    # retried); the followers miss nothing: a hole sends them to the leader's archive.
    seq = client.next_seq()
    for _ in range(20):
        try:
            client.submit(order(client, seq))
            break
        except CommitTimeout:
            continue
    client.submit(order(client))
    end = streamformat.position_of(cluster.redis.xrevrange(stream, count=1)[0][0])
    assert end >= position + 2
    cluster.wait_applied(end, leader, *followers)
    expected = archive_digest(cluster.locations[leader])
    leader_log = archive_entries(cluster.locations[leader])
    for name in followers:
        assert archive_digest(cluster.locations[name]) == expected
        assert archive_entries(cluster.locations[name]) == leader_log
    # The forged ids made the leader's publish of position + 1 collide: that position
    # never reached the live stream, and each follower fetched it from the leader's archive.
    assert any("catching up from" in cluster.nodes.processes[name].log_path.read_text() for name in followers)
