"""Real-process regression tests of the four ways a committed result was lost, and what
the cluster stays able to do (DESIGN §4).

Every test checks that each result a client got as committed is, at its position and
with the same payloads, in the final leader's archive, and that the archives agree.

1. Election by (last term, position), never by position alone.
2. Election quorum N - W + 1 of reports made after the fence moved: no quorum, no leader.
3. Fenced delivery: a deposed leader delivers no result once its term ended.
4. Archive identity: a leader that lost its archive loses its term and resyncs.
5. Availability with N = 2, W = 1: one follower down, then the leader down.
6. An operator's forced election, when the cluster cannot elect safely.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid

import psycopg
import pytest
from psycopg import sql

import wire
from controlplane.clusters import services
from controlplane.clusters.models import Cluster, RoleChange
from nodes.engine import PlaceOrder
from tests.nodes.conftest import (
    PG_SERVER,
    SteadyLoad,
    archive_entries,
    assert_archives_agree,
    assert_committed_results_in,
    pause,
    resume,
    wait_leader,
    wait_until,
)
from wire.client import CommitTimeout

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def order(client, account: str, side: int, price: int, qty: int = 1) -> PlaceOrder:
    return PlaceOrder(
        client_id=client.client_id, client_seq=client.next_seq(), account=account,
        symbol="ACME", side=side, qty=qty, price=price,
    )  # fmt: skip


def last_committed_position(load: SteadyLoad) -> int:
    return max(r.first_position + len(r.payloads) - 1 for r in load.committed.values())


def log_text(cluster, name: str, since: int = 0) -> str:
    return cluster.nodes.processes[name].log_path.read_bytes()[since:].decode(errors="replace")


def start(request, cluster) -> tuple[str, str, str]:
    """Start the nodes, then the supervisor (a worker that starts slower than the failover
    timeout would otherwise lose its term before it ever reported), add the instrument.
    Returns (leader, follower, follower)."""
    cluster.start_all()
    request.getfixturevalue("supervisor")
    cluster.add_instrument(cluster.client())
    leader = cluster.cluster.leader.name
    return (leader, *sorted(name for name in cluster.secrets if name != leader))


def kill_at_once(cluster, *names: str) -> None:
    for name in names:
        cluster.nodes.signal(name, signal.SIGKILL)
    for name in names:
        cluster.nodes.kill(name)  # reaps it


def wait_no_safe_election(cluster, survivor: str) -> Cluster:
    """The cluster has fenced a new term and waits, having heard `survivor`'s fresh report."""

    def waiting():
        row = cluster.cluster
        node = cluster.row(survivor)
        return (
            row
            if row.term > 1
            and row.leader_id is None
            and row.status == "no_safe_election"
            and node.fence_seen >= row.term
            and cluster.is_live(survivor)
            and f"best live candidate {survivor}" in row.status_message
            else None
        )

    return wait_until(
        waiting,
        30,
        lambda: (
            f"the cluster to wait for reports ({cluster.cluster.status}: {cluster.cluster.status_message})"
        ),
    )


def stays_leaderless(cluster, seconds: float) -> None:
    """No leader during `seconds` (several supervisor cycles): a negative, so it observes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = cluster.cluster
        assert row.leader_id is None, (
            f"{row.leader} elected in term {row.term}: {row.status_message}"
        )
        time.sleep(0.1)


# -- 1. election restriction ------------------------------------------------------------


def test_election_compares_the_last_term_before_the_position(private_redis, make_cluster, request):
    """n1 archives 21 events alone in term 1 (published, never acknowledged, then lost with
    Redis); n2 commits an order in term 2 at a position n1 also holds; with n2 gone, n1's
    longer log of an older term must not beat n3, which holds that order."""
    started = time.monotonic()
    cluster = make_cluster(size=3, write_quorum=1)
    n1, n2, n3 = start(request, cluster)
    client = cluster.client(timeout=30)
    base = len(archive_entries(cluster.locations[n1]))

    pause(cluster, n2, n3)
    alone = cluster.client(timeout=1.0)
    # A read a follower had waiting in Redis when it stopped is answered with the first
    # batch published (it reaches the follower when it resumes): let that be one event.
    with pytest.raises(CommitTimeout):
        alone.submit(order(alone, "alone", 1, 980))
    with pytest.raises(CommitTimeout):
        alone.submit_many([order(alone, "alone", 1, 990 - i % 5) for i in range(20)])
    wait_until(
        lambda: len(archive_entries(cluster.locations[n1])) >= base + 21,
        10,
        f"{n1} to archive 21 events",
    )
    newest = cluster.redis.xrevrange(wire.events_key(cluster.name, 1), count=1)
    assert int(newest[0][0].split(b"-")[0]) >= base + 21  # published too, never acknowledged
    kill_at_once(cluster, n1)
    cluster.redis.flushall()  # Redis restarted: n1's published batches are gone
    resume(cluster, n2, n3)

    middle = wait_leader(cluster, above_term=1, among={n2, n3})
    middle_term = cluster.cluster.term
    committed = client.submit(order(client, "middle", 2, 1010))
    assert base < committed.first_position <= base + 2  # n1 holds another event of term 1 there
    other = n3 if middle == n2 else n2

    kill_at_once(cluster, middle)
    cluster.start(n1)  # reports position base + 21 of term 1
    final = wait_leader(cluster, above_term=middle_term, among={n1, other}, timeout=60)
    assert final == other, f"{final} elected: the order committed in term {middle_term} is lost"
    assert_committed_results_in([committed], cluster.locations[final])

    # n1 drops its uncommitted tail and follows; the next order reaches it as well.
    after = client.submit(order(client, "final", 2, 1011))
    wait_until(
        lambda: archive_entries(cluster.locations[n1]) == archive_entries(cluster.locations[final]),
        30, lambda: f"{n1}'s archive to equal {final}'s\n{cluster.nodes.processes[n1].log_tail()}",
    )  # fmt: skip
    assert_committed_results_in([committed, after], cluster.locations[n1])
    assert_archives_agree(cluster.locations[final], cluster.locations[middle])
    assert f"REJOIN: dropping positions {committed.first_position}..{base + 21}" in log_text(
        cluster, n1
    )
    print(
        f"\n[1] {final} (term {middle_term}, position {committed.first_position}) elected over {n1} "
        f"(term 1, position {base + 21}); {time.monotonic() - started:.1f} s"
    )


# -- 2. election quorum of fresh reports ------------------------------------------------


def test_no_election_without_a_quorum_of_reports_made_after_the_fence(
    private_redis, make_cluster, request
):
    """W=1, N=2: orders commit with n2's ack alone while n3 is paused. With n1 and n2 dead,
    n3 alone is not N - W + 1 = 2 reports: the cluster waits, says why, and elects once
    n2 is back."""
    started = time.monotonic()
    cluster = make_cluster(size=3, write_quorum=1)
    n1, n2, n3 = start(request, cluster)
    pause(cluster, n3)
    load = SteadyLoad(cluster).start()
    load.wait_for(200)

    kill_at_once(cluster, n1, n2)
    cluster.redis.flushall()  # n3 cannot fetch what it missed from the live stream
    resume(cluster, n3)
    row = wait_no_safe_election(cluster, n3)
    assert "waiting for" in row.status_message
    assert n2 in row.status_message  # whom it waits for
    stays_leaderless(cluster, 1.5)
    behind = cluster.row(n3).archived_position
    assert behind < last_committed_position(load)  # electing n3 would lose results

    cluster.start(n2)
    leader = wait_leader(cluster, above_term=1, among={n2}, timeout=60)
    load.wait_for(len(load.committed) + 100, timeout=60)
    load.stop()
    checked = assert_committed_results_in(load, cluster.locations[leader])
    wait_until(
        lambda: archive_entries(cluster.locations[n3]) == archive_entries(cluster.locations[leader]),
        30, lambda: f"{n3} to catch up with {leader}\n{cluster.nodes.processes[n3].log_tail()}",
    )  # fmt: skip
    print(
        f"\n[2] waited with: {row.status_message!r}; {checked} results checked; {time.monotonic() - started:.1f} s"
    )


# -- 3. fenced delivery -----------------------------------------------------------------


def published_position(cluster, term: int, marker: bytes) -> int | None:
    """The position of the event carrying `marker` in the term's live stream, if published."""
    from archive.streamformat import EVENTS, decode_events

    for _id, fields in cluster.redis.xrevrange(wire.events_key(cluster.name, term), count=50):
        if marker in fields[EVENTS]:
            return next(e.position for e in decode_events(fields[EVENTS]) if marker in e.payload)
    return None


def acknowledged_in_term(cluster, term: int, position: int) -> bool:
    return any(
        int(fields[b"t"]) == term and int(fields[b"p"]) >= position
        for _id, fields in cluster.redis.xrevrange(wire.acks_key(cluster.name), count=200)
    )


class RedisMonitor:
    """Every command Redis runs, scripts' own commands included (MONITOR), while it runs."""

    def __init__(self, url: str) -> None:
        import threading

        import redis as redis_lib

        self.redis = redis_lib.Redis.from_url(url)
        self.lines: list[tuple[str, str]] = []  # (client type: tcp or lua, command)
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="redis-monitor", daemon=True)

    def run(self) -> None:
        with self.redis.monitor() as monitor:
            self.ready.set()
            for command in monitor.listen():
                if command:
                    self.lines.append((command["client_type"], command["command"][:500]))
                if self.stopping.is_set():
                    return

    def __enter__(self) -> RedisMonitor:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.redis.close()

    def deliveries(self, commands_key: str, term: int) -> list[list[str]]:
        """For each fenced delivery script called with `term`: the commands it ran."""
        found = []
        for index, (kind, command) in enumerate(self.lines):
            words = command.split(" ")
            if kind == "lua" or words[0].upper() not in ("EVALSHA", "EVAL") or len(words) < 6:
                continue
            count = int(words[2])
            keys, args = words[3 : 3 + count], words[3 + count :]
            if len(keys) >= 2 and keys[1] == commands_key and args and args[0] == str(term):
                ran = []
                for later_kind, later in self.lines[index + 1 :]:
                    if later_kind != "lua":
                        break
                    ran.append(later.split(" ")[0].upper())
                found.append(ran)
        return found


def test_deposed_leader_delivers_no_result_after_its_term_ended(
    private_redis, make_cluster, request
):
    """n1 is paused after it published a batch and before the acks came in; the acks make
    the batch committed in term 1. The term ends, n2 or n3 leads, and when n1 wakes up with
    those acks in hand it must deliver nothing: its result comes from the new leader only
    (as a duplicate of the original), and nothing committed is lost."""
    started = time.monotonic()
    cluster = make_cluster(size=3, write_quorum=1)
    n1, n2, n3 = start(request, cluster)
    load = SteadyLoad(cluster).start()
    load.wait_for(100)

    pause(cluster, n2, n3)  # no ack can come in before n1 is paused
    probe = cluster.client()
    marker = f"probe-{uuid.uuid4().hex[:8]}"
    entry_id = probe.send([order(probe, marker, 1, 900)])
    position = wait_until(
        lambda: published_position(cluster, 1, marker.encode()), 10, f"{n1} to publish the probe"
    )
    pause(cluster, n1)
    resume(cluster, n2, n3)
    wait_until(
        lambda: acknowledged_in_term(cluster, 1, position),
        10,
        "a follower to acknowledge the probe in term 1",
    )
    assert cluster.redis.llen(probe.reply_key) == 0  # committed, not delivered: the window is open

    leader = wait_leader(cluster, above_term=1, among={n2, n3})
    load.wait_for(len(load.committed) + 100, timeout=30)
    with RedisMonitor(private_redis) as monitor:
        resume(cluster, n1)
        resumed_at = time.monotonic()
        # n1's loop reports as a follower only after its leader threads (commit thread too) stopped.
        wait_until(
            lambda: cluster.row(n1).status_message.startswith(f"follower of {leader}"),
            30, lambda: f"{n1} to follow {leader}\n{cluster.nodes.processes[n1].log_tail()}",
        )  # fmt: skip
    # What n1 tried after waking: each delivery of term 1 ran only the fence check (GET).
    attempts = monitor.deliveries(wire.commands_key(cluster.name), term=1)
    assert all(ran == ["GET"] for ran in attempts), f"a delivery of term 1 ran {attempts}"
    load.wait_for(len(load.committed) + 100, timeout=30)
    load.stop()

    wait_until(
        lambda: cluster.redis.llen(probe.reply_key) >= 1,
        20,
        "the probe's result from the new leader",
    )
    messages = [wire.decode(m) for m in cluster.redis.lrange(probe.reply_key, 0, -1)]
    statuses = [
        result[0] for got_id, results in messages if got_id == entry_id for result in results
    ]
    assert statuses, "the new leader never answered the probe"
    assert all(s == wire.RESULT_DUPLICATE for s in statuses), (
        f"the probe was answered {statuses} (0 = committed: delivered by the deposed leader {n1})"
    )
    [result] = probe.wait(entry_id, timeout=1)
    assert result.first_position == position
    assert_committed_results_in([result], cluster.locations[leader])
    checked = assert_committed_results_in(load, cluster.locations[leader])
    wait_until(
        lambda: archive_entries(cluster.locations[n1]) == archive_entries(cluster.locations[leader]),
        30, lambda: f"{n1}'s archive to equal {leader}'s\n{cluster.nodes.processes[n1].log_tail()}",
    )  # fmt: skip
    other = n3 if leader == n2 else n2
    assert_archives_agree(cluster.locations[leader], cluster.locations[other])
    print(
        f"\n[3] probe at {position} committed in term 1, answered only by {leader} (duplicate); "
        f"{n1} woke up and tried {len(attempts)} fenced deliveries of term 1, all refused; "
        f"{checked} results checked; {time.monotonic() - started:.1f} s (n1 followed "
        f"{time.monotonic() - resumed_at:.1f} s after SIGCONT)"
    )


# -- 4. archive identity ----------------------------------------------------------------


def test_leader_that_lost_its_archive_loses_its_term_and_resyncs(make_cluster, request, caplog):
    """n1 (leader) is killed, its archive dropped, and it restarts before the failover
    timeout: the control plane sees a new archive id, ends n1's term and elects n2 or n3;
    n1 follows as a new empty replica until it holds everything, then equals the leader."""
    caplog.set_level(logging.WARNING, logger="controlplane.services")
    started = time.monotonic()
    cluster = make_cluster(size=3, write_quorum=1)
    # Long enough for the worker to restart (up to 5.5 s seen on a busy 2-core machine)
    # before the supervisor would end n1's term for its silence: the term must end
    # because of the new archive.
    Cluster.objects.filter(name=cluster.name).update(failover_timeout=10.0)
    n1, n2, n3 = start(request, cluster)
    load = SteadyLoad(cluster).start()
    load.wait_for(200)

    old_id = cluster.row(n1).archive_id
    since = cluster.nodes.processes[n1].log_path.stat().st_size
    kill_at_once(cluster, n1)
    killed_at = time.monotonic()
    committed_before = last_committed_position(load)
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        dbname = cluster.locations[n1].rsplit("/", 1)[1]
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
    cluster.start(n1)

    leader = wait_leader(cluster, above_term=1, among={n2, n3})
    elected_after = time.monotonic() - killed_at
    change = RoleChange.objects.get(cluster__name=cluster.name, term=2)
    assert f"leader {n1} lost its archive" in change.reason, change.reason  # not its silence
    row = cluster.row(n1)
    assert row.archive_id != old_id
    assert row.role == "follower"

    load.wait_for(len(load.committed) + 200, timeout=30)
    load.stop()
    wait_until(
        lambda: not cluster.row(n1).resyncing,
        30,
        lambda: f"{n1} to finish resyncing\n{cluster.nodes.processes[n1].log_tail()}",
    )
    checked = assert_committed_results_in(load, cluster.locations[leader])
    wait_until(
        lambda: archive_entries(cluster.locations[n1]) == archive_entries(cluster.locations[leader]),
        30, lambda: f"{n1}'s archive to equal {leader}'s\n{cluster.nodes.processes[n1].log_tail()}",
    )  # fmt: skip
    other = n3 if leader == n2 else n2
    assert_archives_agree(cluster.locations[leader], cluster.locations[other])

    # It was a resyncing replica from its first report with the new archive until it held
    # the leader's position after the reset (which covers every commit it helped make).
    messages = [r.getMessage() for r in caplog.records if r.name == "controlplane.services"]
    reset = next(i for i, m in enumerate(messages) if f"node {n1}: archive changed" in m)
    resynced = next(i for i, m in enumerate(messages) if f"node {n1}: resynced to" in m)
    assert reset < resynced
    at = int(messages[resynced].split("resynced to ")[1].split(":")[0])
    row = cluster.row(n1)
    assert row.resync_target is not None
    assert at >= row.resync_target >= committed_before
    assert "leading term" not in log_text(cluster, n1, since)  # never led from position 0
    print(
        f"\n[4] {leader} elected {elected_after:.1f} s after the kill ({change.reason[:90]}...); "
        f"{n1} resynced at {at} >= target {row.resync_target} >= {committed_before}; {checked} results checked; "
        f"{time.monotonic() - started:.1f} s"
    )


# -- 5. availability --------------------------------------------------------------------


def test_with_two_replicas_and_write_quorum_one_trading_survives_one_node_down(
    make_cluster, request
):
    """N=2, W=1 tolerates one node down: (a) a paused follower, (b) a dead leader."""
    started = time.monotonic()
    cluster = make_cluster(size=3, write_quorum=1)
    n1, n2, n3 = start(request, cluster)
    load = SteadyLoad(cluster).start()
    load.wait_for(100)

    pause(cluster, n3)
    wait_until(lambda: cluster.row(n3).status == "offline", 10, f"{n3} to be marked offline")
    before = len(load.committed)
    load.wait_for(before + 200, timeout=30)
    assert cluster.cluster.leader.name == n1
    resume(cluster, n3)
    cluster.wait_applied(last_committed_position(load), n3, timeout=30)

    cluster.nodes.kill(n1)
    leader = wait_leader(cluster, above_term=1, among={n2, n3})
    before = len(load.committed)
    load.wait_for(before + 200, timeout=30)
    load.stop()
    checked = assert_committed_results_in(load, cluster.locations[leader])
    other = n3 if leader == n2 else n2
    wait_until(
        lambda: archive_entries(cluster.locations[other]) == archive_entries(cluster.locations[leader]),
        30, f"{other}'s archive to equal {leader}'s",
    )  # fmt: skip
    print(f"\n[5] {checked} results checked; {time.monotonic() - started:.1f} s")


# -- 6. forced election -----------------------------------------------------------------


def test_forced_election_when_no_safe_one_says_what_may_be_lost(
    private_redis, make_cluster, request
):
    """With the leader and the acking follower down, the cluster waits (no_safe_election);
    an operator forces the survivor, and the role change says FORCED and what it lacks."""
    started = time.monotonic()
    cluster = make_cluster(size=3, write_quorum=1)
    n1, n2, n3 = start(request, cluster)
    pause(cluster, n3)
    load = SteadyLoad(cluster).start()
    load.wait_for(100)
    load.stop()
    last = last_committed_position(load)
    wait_until(
        lambda: min(cluster.row(n).archived_position for n in (n1, n2)) >= last, 10,
        f"{n1} and {n2} to report position {last}",
    )  # fmt: skip

    kill_at_once(cluster, n1, n2)
    cluster.redis.flushall()
    resume(cluster, n3)
    row = wait_no_safe_election(cluster, n3)
    assert "waiting for" in row.status_message
    assert n2 in row.status_message
    stays_leaderless(cluster, 1.0)

    change = services.force_leader(cluster.name, n3, actor=services.Actor("test"), reason="drill")
    assert change.new_leader.name == n3
    assert change.term == row.term
    assert change.actor == "test"
    assert change.reason.startswith("drill: ")
    assert f"FORCED election of {n3}" in change.reason
    for gone in (n1, n2):
        assert (
            f"{gone} holds up to position {cluster.row(gone).archived_position} (term 1)"
            in change.reason
        )
    assert cluster.row(n3).archived_position < last  # what the reason warns about is real
    assert cluster.cluster.leader.name == n3
    wait_until(
        lambda: cluster.row(n3).status_message.startswith(f"leader of term {row.term}"),
        20, lambda: f"{n3} to lead\n{cluster.nodes.processes[n3].log_tail()}",
    )  # fmt: skip
    print(f"\n[6] {change.reason}; {time.monotonic() - started:.1f} s")
