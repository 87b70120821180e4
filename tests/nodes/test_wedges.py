"""No wedge, ever (issue 10): each way the cluster used to stop for good, on real processes.

Every test injects the fault into a running cluster and checks that it keeps committing
(client submissions or a SteadyLoad succeed after the fault) and that nothing a client
got as committed is lost.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

import wire
from archive import get_fence
from archive.schema import WRITER_LOCK_KEY
from controlplane.clusters import services
from controlplane.clusters.models import RoleChange
from nodes.engine import OrderAccepted, PlaceOrder, decode_events, encode_command
from tests.nodes.conftest import (
    PG_SERVER,
    SteadyLoad,
    archive_entries,
    assert_committed_results_in,
    assert_each_committed_command_once,
    pause,
    resume,
    wait_until,
)
from wire import rpc
from wire.connection import RedisTarget
from wire.keys import keys

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TEST = services.Actor("test")


def order(client, account: str = "w") -> PlaceOrder:
    return PlaceOrder(
        client_id=client.client_id, client_seq=client.next_seq(), account=account,
        symbol="ACME", side=1, qty=1, price=990,
    )  # fmt: skip


def dbname(location: str) -> str:
    return location.rsplit("/", 1)[1]


def log_text(cluster, name: str) -> str:
    return cluster.nodes.processes[name].log_path.read_text(errors="replace")


def start_trading(cluster, *names: str):
    """Start the nodes (all when none named) and the ACME book; returns (client, leader,
    followers, term) as the cluster settled: on a loaded machine a node may take longer
    to start than the start-up grace, and the supervisor then elects another leader."""
    if names:
        for name in names:
            cluster.start(name)
        cluster.wait_live(*names)
    else:
        names = tuple(cluster.start_all())
    client = cluster.client()
    cluster.add_instrument(client)
    # More than a supervisor cycle: one that began before the leader's first report is over.
    time.sleep(0.5)
    row = cluster.cluster
    assert row.leader is not None, row.status_message
    leader = row.leader.name
    cluster.wait_live(leader)
    return client, leader, [name for name in names if name != leader], row.term


def settle(cluster, load: SteadyLoad, *names: str) -> None:
    """Stop the load; every node applies what it committed; the logs agree; each
    committed command ran exactly once."""
    load.stop()
    last = max(result.first_position for result in load.committed.values())
    cluster.wait_applied(last, *names)
    leader = cluster.cluster.leader.name
    for name in names:
        wait_until(
            lambda name=name: archive_entries(cluster.locations[name])[:last]
            == archive_entries(cluster.locations[leader])[:last],
            20, f"{name}'s log to agree with the leader's up to position {last}",
        )  # fmt: skip
    assert_each_committed_command_once(load, cluster.locations[leader])
    assert_committed_results_in(load, cluster.locations[leader])


# -- 1. poison entries ------------------------------------------------------------------


def test_poison_entries_on_every_stream_are_set_aside_and_the_loop_goes_on(
    make_cluster, supervisor
):
    cluster = make_cluster(size=2, write_quorum=1)
    client, leader, [follower], term = start_trading(cluster)
    before = client.submit(order(client))
    redis, name = cluster.redis, cluster.name
    dead = keys(name)
    logged = {node: len(log_text(cluster, node)) for node in (leader, follower)}

    reply = wire.reply_key(name, f"poisoner-{uuid.uuid4().hex[:8]}")
    victim = f"{keys(name).base}:not-a-reply-list"
    intruder = PlaceOrder(
        client_id="intruder", client_seq=1, account="x", symbol="ACME", side=1, qty=1, price=990
    )
    valid_batch = wire.encode([encode_command(intruder)])
    poison = {  # what each entry is -> (fields, the reason it must be set aside for)
        "one byte 5": ({"r": reply, "c": wire.encode(5)}, "not a list of encoded commands: int"),
        "not msgpack": ({"r": reply, "c": b"\xc1\xc1 not msgpack"}, "not msgpack"),
        "no commands": ({"r": reply}, "missing field"),
        "no reply list": ({"c": valid_batch}, "missing field"),
        "list of ints": (
            {"r": reply, "c": wire.encode([1, 2, 3])},
            "not a list of encoded commands: list",
        ),
        "huge": (
            {"r": reply, "c": b"\x00" * (wire.MAX_ENTRY_BYTES + 1)},
            f"more than the {wire.MAX_ENTRY_BYTES}",
        ),
        "foreign reply list": (
            {"r": victim, "c": valid_batch},
            f"is not a reply list of cluster {name}",
        ),
    }
    ids = {
        what: redis.xadd(wire.commands_key(name), fields).decode()
        for what, (fields, _) in poison.items()
    }
    sent_at = time.monotonic()
    # A valid command right behind the poison commits within a cycle or two.
    behind = client.submit(order(client), timeout=5)
    assert time.monotonic() - sent_at < 3.0
    assert behind.events[0].__class__ is OrderAccepted

    # Poison on the ack stream (read by the leader), on the live stream of the term (read
    # by the follower: garbage at an id between two positions, so the leader's next
    # publish still fits) and malformed requests on the leader's queue.
    redis.xadd(wire.acks_key(name), {"garbage": "yes"})
    redis.xadd(wire.acks_key(name), {"n": follower, "p": "many", "t": "1"})
    live = wire.events_key(name, term)
    last_id = redis.xrevrange(live, count=1)[0][0].decode()
    poison_live_id = redis.xadd(
        live, {"first": "not a number", "events": b"\xc1"}, id=f"{last_id.split('-')[0]}-1"
    )
    tasks = rpc.task_sender(RedisTarget(settings.REDIS_URL))
    tasks.send_task(rpc.TASK, args=["terms"], queue=rpc.queue(leader))  # no answer list
    tasks.send_task(rpc.TASK, args=[b"\xff\xfe".hex(), 1, []], queue=rpc.queue(leader))
    # A request its asker stopped waiting for before the node took it is not run.
    stale = rpc.send(tasks, redis, name, leader, "terms", expires=0.001)

    # Later commands commit, on the same leader, in the same term: no rebuild, no failover.
    results = [before, behind]
    for _ in range(5):
        results.append(client.submit(order(client), timeout=5))

    # Every bad command-stream entry is in the dead-letter stream with its reason.
    def dead_letters() -> dict[str, dict[bytes, bytes]]:
        return {fields[b"id"].decode(): fields for _id, fields in redis.xrange(dead.deadletter)}

    wait_until(
        lambda: set(ids.values()) <= set(dead_letters()),
        10,
        "every poison command entry to be set aside",
    )
    letters = dead_letters()
    for what, entry_id in ids.items():
        fields = letters[entry_id]
        assert fields[b"stream"] == b"commands", what
        assert poison[what][1].encode() in fields[b"reason"], (what, fields[b"reason"])
        assert fields[b"node"] == leader.encode()
        assert len(fields[b"data"]) <= 512
    assert letters[poison_live_id.decode()][b"stream"] == b"events"
    wait_until(
        lambda: {k: int(v) for k, v in redis.hgetall(dead.deadletter_counts).items()}.keys()
        >= {b"commands", b"acks", b"events", b"requests"},
        10, "poison on the ack, live and request streams to be counted",
    )  # fmt: skip
    counts = {k.decode(): int(v) for k, v in redis.hgetall(dead.deadletter_counts).items()}
    assert counts["commands"] == len(poison)
    assert counts["acks"] == 2
    assert counts["requests"] == 2
    wait_until(
        lambda: "its asker stopped waiting; not run" in log_text(cluster, leader), 10,
        "the leader to drop the request nobody waits for",
    )  # fmt: skip
    assert redis.llen(stale.answer_key) == 0
    assert counts["events"] >= 1
    print(f"\nPOISON: dead letters per stream {counts}")

    # The sender of each bad batch that named a valid reply list got a MALFORMED result
    # with the reason; nothing was written to a key outside the reply lists.
    answers = {}
    while len(answers) < 5:
        got = redis.blpop([reply], timeout=5)
        assert got is not None, f"only {len(answers)} of 5 MALFORMED replies arrived: {answers}"
        entry_id, entry_results = wire.decode(got[1])
        answers[entry_id] = entry_results
    for what in ("one byte 5", "not msgpack", "no commands", "list of ints", "huge"):
        [[status, position, payloads, error]] = answers[ids[what]]
        assert status == wire.RESULT_MALFORMED
        assert (position, payloads) == (0, [])
        assert error.startswith("entry set aside: "), (what, error)
        assert poison[what][1] in error, (what, error)
    assert not redis.exists(victim)
    # Set aside once: acknowledged and gone from the command stream, never claimed again.
    wait_until(
        lambda: redis.xpending(wire.commands_key(name), wire.LEADER_GROUP)["pending"] == 0,
        10,
        "no pending entry",
    )
    remaining = {entry_id.decode() for entry_id, _ in redis.xrange(wire.commands_key(name))}
    assert not remaining & set(ids.values())

    # The intruder's command (in entries without a valid reply list) never ran.
    entries = archive_entries(cluster.locations[leader])
    events = decode_events([entry[4] for entry in entries])
    assert not [e for e in events if getattr(e, "client_id", None) == "intruder"]
    assert (cluster.cluster.term, cluster.cluster.leader.name) == (term, leader)
    for node in (leader, follower):
        assert "rebuilding from the archive" not in log_text(cluster, node)[logged[node] :], node
    last = max(r.first_position for r in results)
    cluster.wait_applied(last, leader, follower, timeout=10)
    assert_committed_results_in(results, cluster.locations[leader])
    assert archive_entries(cluster.locations[follower]) == entries


def test_a_poison_entry_on_the_live_stream_is_set_aside_once(make_cluster):
    cluster = make_cluster(size=2, write_quorum=1)
    client, _leader, [follower], term = start_trading(cluster)
    cluster.wait_applied(1, follower)
    redis, name = cluster.redis, cluster.name
    live = wire.events_key(name, term)
    last_id = redis.xrevrange(live, count=1)[0][0].decode()
    redis.xadd(live, {"garbage": "yes"}, id=f"{last_id.split('-')[0]}-1")
    time.sleep(1.0)  # the follower is idle, up to date just before the poison
    result = client.submit(order(client), timeout=5)
    cluster.wait_applied(result.first_position, follower)
    counts = {k.decode(): int(v) for k, v in redis.hgetall(keys(name).deadletter_counts).items()}
    assert counts == {"events": 1}, f"one poison entry set aside {counts.get('events')} times"
    assert redis.xlen(keys(name).deadletter) == 1


# -- 2. nodes that die quietly ----------------------------------------------------------


def test_nodes_ride_out_an_archive_database_outage_and_resume(make_cluster, supervisor):
    """Every archive unreachable for a few seconds (a PostgreSQL restart): recovery fails
    again and again; each node says so in its status, retries, and the cluster resumes."""
    cluster = make_cluster(size=3, write_quorum=1)
    _client, leader, followers, _term = start_trading(cluster)
    names = [leader, *followers]
    load = SteadyLoad(cluster).start()
    load.wait_for(200)
    databases = [dbname(cluster.locations[name]) for name in names]
    retrying: dict[str, str] = {}
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        try:
            for database in databases:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(
                        sql.Identifier(database)
                    )
                )
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY(%s)",
                (databases,),
            )
            down_until = time.monotonic() + 3.0
            while time.monotonic() < down_until:
                for name in names:
                    message = cluster.row(name).status_message
                    if "retrying" in message:
                        retrying.setdefault(name, message)
                    assert cluster.nodes.processes[name].alive(), (
                        f"{name} exited during the outage\n{cluster.nodes.processes[name].log_tail()}"
                    )
                time.sleep(0.1)
        finally:
            for database in databases:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(
                        sql.Identifier(database)
                    )
                )
    assert retrying, "no node reported that it was retrying"
    assert any("failed, retrying in" in message for message in retrying.values()), retrying
    committed = len(load.committed)
    load.wait_for(committed + 300, timeout=60)
    cluster.wait_live(*names, timeout=30)
    for name in names:
        assert cluster.nodes.processes[name].alive()
    settle(cluster, load, *names)

    # A node whose loop ends on its own (here: removed while running) exits non-zero, so
    # that its runner or an operator notices; the others go on.
    leader = cluster.cluster.leader.name
    removed = next(name for name in names if name != leader)
    services.remove_node(removed, actor=TEST)
    process = cluster.nodes.processes[removed]
    wait_until(
        lambda: not process.alive(), 30, lambda: f"the removed node to exit\n{process.log_tail()}"
    )
    assert process.process.returncode != 0, "a node whose loop ended on its own exited 0"
    assert "control plane refuses node" in process.log_path.read_text()
    client = cluster.client()
    result = client.submit(order(client), timeout=10)
    assert_committed_results_in([result], cluster.locations[leader])


def test_a_node_removed_while_running_exits_78_so_its_runner_leaves_it(make_cluster):
    cluster = make_cluster(size=2, write_quorum=0)
    _leader, removed = list(cluster.secrets)
    cluster.start(removed)
    cluster.wait_live(removed)
    services.remove_node(removed, actor=TEST)
    process = cluster.nodes.processes[removed]
    wait_until(
        lambda: not process.alive(), 30, lambda: f"the removed node to exit\n{process.log_tail()}"
    )
    assert "control plane refuses node" in process.log_path.read_text()
    assert process.process.returncode == 78, f"a removed node exits {process.process.returncode}"


# -- 3. fence ahead of the database's term ------------------------------------------------


class Rollback(Exception):
    pass


def test_a_fence_above_the_database_term_is_lowered_and_a_rolled_back_change_leaves_it(
    make_cluster, supervisor
):
    cluster = make_cluster(size=2, write_quorum=1)
    _client, leader, [follower], term = start_trading(cluster)
    load = SteadyLoad(cluster).start()
    load.wait_for(100)
    fence_key = keys(cluster.name).fence

    # A role change whose transaction does not commit moves nothing in Redis.
    from django.db import transaction

    def change_that_rolls_back() -> None:
        with transaction.atomic():
            services.assign_leader(cluster.name, follower, actor=TEST, reason="never committed")
            raise Rollback

    with pytest.raises(Rollback):
        change_that_rolls_back()
    assert get_fence(cluster.redis, cluster.name) == term
    assert (cluster.cluster.term, cluster.cluster.leader.name) == (term, leader)
    load.wait_for(len(load.committed) + 200, timeout=10)  # the live leader is not refused

    # A fence above the database's term (a failed change of old, a Redis that outlived
    # its database): the supervisor brings it down and trading goes on.
    cluster.redis.set(fence_key, term + 6)
    wait_until(
        lambda: get_fence(cluster.redis, cluster.name) == cluster.cluster.term, 10,
        lambda: f"the fence ({get_fence(cluster.redis, cluster.name)}) to come down to the term ({cluster.cluster.term})",
    )  # fmt: skip
    load.wait_for(len(load.committed) + 300, timeout=30)
    assert cluster.cluster.term < term + 6
    assert get_fence(cluster.redis, cluster.name) == cluster.cluster.term
    settle(cluster, load, leader, follower)


# -- 4. catch-up without an end ------------------------------------------------------------


def test_a_follower_whose_replay_stream_vanishes_asks_again_and_catches_up(
    make_cluster, supervisor
):
    cluster = make_cluster(size=3, write_quorum=1, NODE_STREAM_MAXLEN="100")
    first_node, second, late = list(cluster.secrets)
    client, leader, [early], term = start_trading(cluster, first_node, second)
    batches = [client.send([order(client, f"a{i % 5}") for i in range(500)]) for _ in range(6)]
    results = [result for entry_id in batches for result in client.wait(entry_id, timeout=30)]
    last = max(r.first_position + len(r.payloads) - 1 for r in results)
    cluster.wait_applied(last, leader, early)
    first, _ = cluster.redis.xrange(wire.events_key(cluster.name, term), count=1)[0]
    assert int(first.split(b"-")[0]) > 1000  # the live stream no longer holds the start

    replay_key = keys(cluster.name).replay(late)

    def replay_requested() -> bool:
        return f"{late} asks for a replay of the archive" in log_text(cluster, leader)

    # The leader's archive table is locked while `late` asks for its replay, so that the
    # test can freeze `late` before it reads any of it.
    with psycopg.connect(cluster.locations[leader]) as blocker:
        blocker.execute("LOCK TABLE archive_segment IN ACCESS EXCLUSIVE MODE")
        cluster.start(late)
        wait_until(
            replay_requested,
            60,
            lambda: f"{late} to ask for a replay\n{cluster.nodes.processes[late].log_tail()}",
        )
        pause(cluster, late)
        blocker.rollback()  # the leader publishes the replay now
        wait_until(
            lambda: (tail := cluster.redis.xrevrange(replay_key, count=1)) and int(tail[0][0].split(b"-")[0]) >= last,
            20, "the leader to publish the whole replay",
        )  # fmt: skip
    assert archive_entries(cluster.locations[late]) == []  # it read nothing of it
    cluster.redis.delete(replay_key)  # lost (Redis flushed, expired) before it was read
    resume(cluster, late)

    # While it waits on the vanished stream its heartbeat shows it stuck, then it asks
    # again and finishes.
    wait_until(
        lambda: cluster.row(late).stalled_for > 2.0, 15, f"{late} to report that its loop is stuck"
    )
    cluster.wait_applied(last, late, timeout=40)
    text = log_text(cluster, late)
    assert "brought nothing for" in text
    assert "asking again" in text
    assert text.count("catching up from") >= 2
    more = [client.submit(order(client), timeout=10) for _ in range(5)]
    newest = max(r.first_position for r in more)
    cluster.wait_applied(newest, leader, early, late)
    assert cluster.row(late).stalled_for < 2.0
    logs = [archive_entries(cluster.locations[name]) for name in (leader, early, late)]
    assert logs[0] == logs[1] == logs[2]
    assert_committed_results_in(results + more, cluster.locations[late])


# -- 5. liveness without progress -----------------------------------------------------------


def test_a_leader_whose_loop_is_stuck_on_its_archive_is_failed_over(make_cluster, supervisor):
    cluster = make_cluster(size=3, write_quorum=1)
    _client, old, [a, b], term = start_trading(cluster)
    load = SteadyLoad(cluster).start()
    load.wait_for(200)

    def role_changes() -> str:
        return "; ".join(
            f"term {c.term}: {c.new_leader.name if c.new_leader else None}: {c.reason}"
            for c in RoleChange.objects.filter(cluster__name=cluster.name, term__gt=term).order_by(
                "term"
            )
        )

    # Hold the archive's writer lock: the leader's next append blocks on it, its loop
    # stops making progress, and its heartbeat thread goes on reporting.
    with psycopg.connect(cluster.locations[old], autocommit=True) as blocker:
        blocker.execute("SELECT pg_advisory_lock(%s)", (WRITER_LOCK_KEY,))
        blocked_at = time.monotonic()
        ended = wait_until(
            lambda: RoleChange.objects.filter(cluster__name=cluster.name, term=term + 1).first(),
            10, "the stuck leader's term to end",
        )  # fmt: skip
        failed_over_after = time.monotonic() - blocked_at
        assert f"leader {old} reports but its loop made no progress" in ended.reason, ended.reason
        assert cluster.nodes.processes[old].alive()
        new = wait_until(
            lambda: (row := cluster.cluster).leader is not None and row.leader.name != old and row.leader.name,
            6, lambda: f"a leader other than the stuck {old}; role changes: {role_changes()}",
        )  # fmt: skip
        assert new in (a, b)
        load.wait_for(len(load.committed) + 300, timeout=30)  # trading goes on without it
    # The lock is released: the old leader finds its term over, drops what it archived
    # alone, and follows.
    wait_until(
        lambda: cluster.row(old).role == "follower" and cluster.is_live(old) and cluster.row(old).stalled_for < 1.0,
        30, lambda: f"{old} to rejoin as a follower\n{cluster.nodes.processes[old].log_tail()}",
    )  # fmt: skip
    load.wait_for(len(load.committed) + 200, timeout=30)
    settle(cluster, load, old, a, b)
    print(
        f"\nSTUCK LEADER: its term ended {failed_over_after:.2f} s after its archive lock was taken"
    )


# -- 6. connection exhaustion ------------------------------------------------------------------


# Integrators: threads in a process of their own (their work must not slow the control
# plane's process down), each sending a command or reading the cluster (`mode`: post,
# get, or mix: two commands in three requests) for `seconds`; prints what they got as JSON.
_INTEGRATORS = r"""
import json, sys, threading, time, urllib.error, urllib.request
url, token, cluster, threads, seconds, mode, timeout = sys.argv[1:8]
codes, committed, lock = {}, [], threading.Lock()
stop_at = time.monotonic() + float(seconds)

def call(method, path, body=None):
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode() if body is not None else None, method=method,
        headers={"Authorization": "Token " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}

def integrator(index):
    seq = 0
    while time.monotonic() < stop_at:
        seq += 1
        if mode == "post" or (mode == "mix" and seq % 3):
            status, body = call("POST", f"/api/v1/clusters/{cluster}/commands/", {
                "timeout": float(timeout), "commands": [{
                "type": "place_order", "client_id": f"burst{index}", "client_seq": seq, "account": f"acct{index}",
                "symbol": "ACME", "side": "buy" if seq % 2 else "sell", "qty": 1, "price": 1000}]})
            if status == 200:
                with lock:
                    committed.append(body["results"][0]["first_position"])
        else:
            status, _ = call("GET", f"/api/v1/clusters/{cluster}/")
        with lock:
            codes[status] = codes.get(status, 0) + 1

workers = [threading.Thread(target=integrator, args=(i,)) for i in range(int(threads))]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(json.dumps({"codes": codes, "committed": committed}))
"""


@dataclass
class Burst:
    codes: dict[int, int]
    committed: list[int]  # first positions of the commands answered committed
    peak_connections: int  # to the control plane's database, sampled every 20 ms
    oldest_heartbeat: float  # the largest heartbeat age (database clock) of the running nodes
    lost_leader: str  # what the cluster said when it first had no leader or another term
    pool: dict[str, int]  # the control plane's pool statistics over the burst

    def __str__(self) -> str:
        return (
            f"{sum(self.codes.values())} requests {self.codes}, peak {self.peak_connections} connections, "
            f"oldest heartbeat {self.oldest_heartbeat:.2f} s, pool {self.pool}"
            + (f", LOST THE LEADER: {self.lost_leader}" if self.lost_leader else "")
        )


def api_burst(
    cluster, live_server, nodes, *, threads: int, seconds: float, mode: str, timeout: float
) -> Burst:
    """Integrators hammer the control plane's API while the test samples its database
    connections, the nodes' heartbeat ages and the cluster's leader."""
    import json
    import subprocess
    import sys

    from django.contrib.auth.models import Group, User
    from django.db import connection

    from controlplane.clusters import tokens

    user = User.objects.create_user(f"burst-{uuid.uuid4().hex[:6]}")
    user.groups.add(Group.objects.get(name="operators"))
    token = tokens.issue(user.username).token
    control_db = connection.settings_dict["NAME"]
    row = cluster.cluster
    term = row.term
    stop = threading.Event()
    peak = [0]

    def sampler() -> None:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            while not stop.is_set():
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (control_db,)
                ).fetchone()
                peak[0] = max(peak[0], count)
                time.sleep(0.02)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    connection.pool.pop_stats()
    integrators = subprocess.Popen(
        [sys.executable, "-c", _INTEGRATORS, live_server.url, token, cluster.name, str(threads),
         str(seconds), mode, str(timeout)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    oldest_heartbeat, lost_leader = 0.0, ""
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            row = cluster.cluster
            if (row.leader is None or row.term != term) and not lost_leader:
                lost_leader = f"term {row.term}, leader {row.leader}: {row.status_message}"
            now = services.db_now()
            ages = [(now - cluster.row(name).last_heartbeat).total_seconds() for name in nodes]
            oldest_heartbeat = max(oldest_heartbeat, *ages)
            time.sleep(0.2)
        out, _ = integrators.communicate(timeout=120)
    finally:
        if integrators.poll() is None:
            integrators.kill()  # by its own pid
            integrators.wait(10)
        stop.set()
        watcher.join(5)
    stats = connection.pool.pop_stats()
    pool = {
        key: stats.get(key, 0)
        for key in ("requests_num", "requests_queued", "requests_wait_ms", "requests_errors")
    }
    result = json.loads(out)
    codes = {int(code): count for code, count in result["codes"].items()}
    return Burst(codes, result["committed"], peak[0], oldest_heartbeat, lost_leader, pool)


def test_a_burst_of_api_requests_stays_within_the_pool_and_heartbeats_go_on(
    make_cluster, supervisor, live_server
):

    cluster = make_cluster(size=3, write_quorum=1)
    client, leader, followers, _term = start_trading(cluster)
    names = [leader, *followers]
    changes = RoleChange.objects.filter(cluster__name=cluster.name).count()
    burst = api_burst(cluster, live_server, names, threads=16, seconds=5.0, mode="get", timeout=10)
    print(f"\nAPI BURST (16 integrators reading, pool max {settings.DB_POOL_MAX}): {burst}")
    # Without the pool each request thread would hold a connection of its own (16).
    assert burst.peak_connections <= settings.DB_POOL_MAX + 2, burst
    assert not burst.lost_leader, burst
    assert burst.oldest_heartbeat < 2.0, burst  # below the failover timeout all along
    assert set(burst.codes) == {200}, burst
    # A real burst (the count says how much load there was, not how fast it was served:
    # 16 threads against a test server sharing 2 cores with 3 nodes got 168 and 179 answers
    # in two runs, and 200 or more in the runs before them).
    assert sum(burst.codes.values()) >= 100, burst
    assert RoleChange.objects.filter(cluster__name=cluster.name).count() == changes
    result = client.submit(order(client), timeout=10)
    cluster.wait_applied(result.first_position, *names)
    assert_committed_results_in([result], cluster.locations[leader])


def test_command_requests_waiting_for_a_commit_do_not_starve_heartbeats(
    make_cluster, supervisor, live_server
):

    cluster = make_cluster(size=2, write_quorum=1)
    leader, _follower = list(cluster.secrets)
    cluster.start(leader)  # its follower is down: no command can commit (write quorum 1)
    cluster.wait_live(leader)
    time.sleep(0.5)
    row = cluster.cluster
    assert row.leader is not None, row.status_message
    assert row.leader.name == leader, row.status_message
    burst = api_burst(
        cluster, live_server, [leader], threads=12, seconds=6.0, mode="post", timeout=5
    )
    print(f"\nAPI BURST (12 integrators sending to a cluster short of replicas): {burst}")
    assert burst.peak_connections <= settings.DB_POOL_MAX + 2, burst
    assert not burst.lost_leader, burst
    assert burst.oldest_heartbeat < 2.0, burst
    assert set(burst.codes) == {503}, burst  # "not enough replicas", answered in time


# -- 7. clocks ----------------------------------------------------------------------------------


def test_the_ack_reader_and_the_request_queue_survive_a_redis_that_starts_over(
    restartable_redis, make_cluster, supervisor
):
    cluster = make_cluster(size=3, write_quorum=1)
    _client, leader, [a, b], term = start_trading(cluster)
    load = SteadyLoad(cluster).start()
    load.wait_for(100)
    redis, name = cluster.redis, cluster.name
    far = "9999999999999-0"  # written on a clock far ahead
    redis.xadd(wire.acks_key(name), {"clock": "far ahead"}, id=far)
    # The ack reader passed it (set aside as poison): its cursor stands far ahead now.
    wait_until(
        lambda: {k.decode(): int(v) for k, v in redis.hgetall(keys(name).deadletter_counts).items()}
        == {"acks": 1},
        10, "the leader's ack reader to pass the far-ahead entry",
    )  # fmt: skip
    load.wait_for(len(load.committed) + 100, timeout=10)

    # The ack stream starts over below the leader's cursor (lost with its key, as after a
    # Redis restart on a clock behind): the leader still counts new acks.
    redis.delete(wire.acks_key(name))
    load.wait_for(len(load.committed) + 300, timeout=20)
    assert cluster.cluster.term == term
    assert "the ack stream started over" in log_text(cluster, leader)

    # Redis restarts (every key gone, the nodes' queues too): the leader's worker takes
    # requests again, and commits continue.
    restartable_redis.restart(down_for=0.5)
    load.wait_for(len(load.committed) + 300, timeout=60)
    terms = wait_until(lambda: _ask(redis, name, leader), 20, f"{leader} to answer a peer request")
    assert terms[0][1] == 1  # (term, first, last) ranges of its whole log
    settle(cluster, load, leader, a, b)

    # One clock for heartbeat ages: a heartbeat's stamp is the database's now. (The node
    # is stopped first: its own heartbeat must not land between the two readings.)
    cluster.nodes.stop(a)
    before = services.db_now()
    services.record_heartbeat(a, services.HeartbeatReport(**_report_of(cluster.row(a))))
    after = services.db_now()
    assert before <= cluster.row(a).last_heartbeat <= after


def _ask(redis, cluster: str, node: str):
    import redis as redis_lib

    try:
        return rpc.ask(rpc.task_sender(RedisTarget(settings.REDIS_URL)), redis, cluster, node, "terms", timeout=2)
    except (rpc.PeerUnavailable, redis_lib.RedisError):
        return None


def _report_of(row) -> dict:
    return {
        "status": row.status, "status_message": row.status_message, "term": row.cluster.term,
        "archived_position": row.archived_position, "applied_position": row.applied_position,
        "state_hash": row.state_hash, "state_hash_position": row.state_hash_position,
        "software_version": row.software_version, "archive_id": row.archive_id,
        "last_term": row.last_term, "fence_seen": row.fence_seen, "stalled_for": row.stalled_for,
    }  # fmt: skip
