"""Soak: a cluster at a steady offered load for a long time, with snapshots and retention on,
and a node killed (SIGKILL) now and then, leader or follower, restarted a few seconds later.

It starts a control plane (gunicorn), a supervisor (manage.py supervise) and three node
workers (N = 2 replicas, W = 1) on this machine; drives --rate commands/s with the bench's
clients (bench/cluster.py) for --minutes; every --kill-every seconds kills a node drawn
from --seed and starts it again after --down seconds. It prints, as it goes and at the
end: the load achieved and its latency, each kill and how long the node took to follow
again (live, and at the position the leader had when it was restarted), every archive's
size against its bound, and, once the load is over and the nodes have settled, whether every archive
rebuilds to the same state (position and digest). Exit status 1 if any check fails.
Asserts nothing about time: the figures are printed.

The bound is retention's own rule (nodes/protocol/retention.py cut), checked every second
from what the control plane knows: a node may keep everything from the lowest of its
latest verified snapshot, the lowest position a live member holds + 1 and its tail minus
the minimum window; retention applies that cut within a round (INTERVAL_S) of seeing it, so
an archive must never hold more than the cut allowed at some moment of the last SLACK_S
seconds of the node's running time (a killed node deletes nothing while it is down). A
member that lags (a follower catching up) holds every archive's floor, so the bound grows
while it catches up; the steady-state figure (minimum window + snapshot
interval + a few seconds of load) is printed beside it.

    python bench/soak.py [--minutes 30] [--rate 10000] [--kill-every 60] [--down 3]
                         [--snapshot-every 200000] [--keep-events 500000] [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import redis as redis_lib
from django.conf import settings
from django.core.management import call_command
from psycopg import sql

from bench.cluster import MID, ROOT, SYMBOL, TICK, free_port
from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node
from dev.local import LocalNodes
from nodes.engine import AddInstrument, CancelOrder, PlaceOrder, TimeInForce, encode_command
from nodes.protocol import retention
from nodes.retention import INTERVAL_S as RETENTION_INTERVAL_S
from nodes.state import NodeState
from wire.client import ClusterClient
from wire.keys import keys

SLACK_S = 2 * RETENTION_INTERVAL_S + 2.0  # a retention round, heartbeats both ways, the sample

SWEEP_EVERY = 5_000  # commands of a client between two of its sweeps
SWEEP_QTY = 1_000_000  # more than a side of the book ever holds between sweeps


class BatchStream:
    """bench/cluster.py's command mix (70% limit orders near the touch, 25% cancels, 5%
    marketable), made as it is sent: half an hour at 10,000/s is 18 M commands, too many
    to make up front. `batches[i]` must be asked for in order.

    Every SWEEP_EVERY commands a sweep, an IOC order of another account through the whole
    price range, alternately buying and selling, trades away one side of the book. A
    venue's book stays bounded (orders trade or are cancelled); without sweeps this mix
    leaves about 0.6 resting orders per command (its cancels name guessed order ids), and
    half an hour makes a book of about ten million orders, whose snapshots take minutes
    and so hold retention back (the soak measures retention, not a book no venue has)."""

    def __init__(self, client_id: str, count: int, batch: int, seed: int) -> None:
        self.client_id, self.count, self.batch = client_id, count, batch
        self.sweeper = f"{client_id}-sweep"  # its own account: no self-trade prevention
        self.rng = random.Random(seed)
        self.seq = 0
        self.mine: collections.deque[int] = collections.deque(maxlen=10_000)  # recent order ids to cancel

    def __len__(self) -> int:
        return -(-self.count // self.batch)

    def __getitem__(self, index: int) -> list[bytes]:
        rng, out = self.rng, []
        for _ in range(min(self.batch, self.count - self.seq)):
            self.seq += 1
            r = rng.random()
            if self.seq % SWEEP_EVERY == 0:
                side = 1 + (self.seq // SWEEP_EVERY) % 2
                price = MID + 21 * TICK if side == 1 else MID - 21 * TICK
                command = PlaceOrder(
                    self.client_id, self.seq, self.sweeper, SYMBOL, side, SWEEP_QTY, price, tif=TimeInForce.IOC.value
                )
            elif r < 0.25 and self.mine:
                order = self.mine[rng.randrange(len(self.mine))]
                command = CancelOrder(self.client_id, self.seq, self.client_id, order)
            else:
                side = rng.choice((1, 2))
                offset = rng.randint(1, 20) * TICK if r < 0.95 else -rng.randint(1, 4) * TICK
                price = MID - offset if side == 1 else MID + offset
                command = PlaceOrder(self.client_id, self.seq, self.client_id, SYMBOL, side, rng.randint(1, 10), price)
                self.mine.append(rng.randint(1, max(1, self.seq * 2)))  # a plausible engine order id
            out.append(encode_command(command))
        return out


def soak_client(args: tuple) -> dict:
    """One client process at its share of the rate, like bench/cluster.py's, but one that
    rides out failovers: a batch waits for its result as long as it takes (the command
    stream keeps it for the next leader, which answers it once), up to --give-up seconds
    of silence."""
    cluster, redis_url, index, count, batch, rate, give_up = args
    try:
        client = ClusterClient(cluster, redis_url, client_id=f"soak-{uuid.uuid4().hex[:6]}-{index}")
        batches = BatchStream(client.client_id, count, batch, seed=index)
        due_at: dict[str, float] = {}
        latencies: list[float] = []
        interval = batch / rate
        start = time.perf_counter()
        next_due, sent, received, heard_at = start, 0, 0, start
        while received < len(batches):
            now = time.perf_counter()
            while sent < len(batches) and next_due <= now:
                due_at[client.send_encoded(batches[sent])] = next_due
                sent += 1
                next_due += interval
            results = client.receive(max(0.0, next_due - time.perf_counter()) if sent < len(batches) else 1.0)
            done = time.perf_counter()
            if results:
                heard_at = done
            elif done - heard_at > give_up:
                raise RuntimeError(f"no result for {give_up:.0f} s with {sent - received} batches waiting")
            for entry_id, replies in results:
                if entry_id in due_at:
                    latencies.extend([done - due_at.pop(entry_id)] * len(replies))
                    received += 1
        client.close()
        return {"count": len(latencies), "start": start, "end": time.perf_counter(), "latencies": latencies}
    except Exception as error:  # reported, not raised: a Pool hangs on a worker that dies
        return {"error": f"client {index}: {type(error).__name__}: {error}"}


def drive(cluster: str, redis_url: str, clients: int, count: int, batch: int, rate: float, give_up: float) -> dict:
    import multiprocessing
    import statistics

    jobs = [(cluster, redis_url, i, count // clients, batch, rate / clients, give_up) for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(soak_client, jobs)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"error": "; ".join(errors)}
    latencies = sorted(x for r in results for x in r["latencies"])
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "commands": len(latencies),
        "seconds": round(elapsed, 1),
        "committed_per_s": round(len(latencies) / elapsed),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


class SoakCluster:
    """Control plane, supervisor and three nodes of a throwaway cluster, cleaned up after."""

    def __init__(self, workdir: Path, env: dict[str, str], keep_events: int) -> None:
        self.name = f"soak-{uuid.uuid4().hex[:6]}"
        self.workdir = workdir
        self.port = free_port()
        self.redis = redis_lib.Redis.from_url(settings.REDIS_URL)
        call_command("migrate", verbosity=0)
        cluster = Cluster.objects.create(
            name=self.name, replica_count=2, write_quorum=1, term_write_quorum=1,
            heartbeat_interval=0.5, failover_timeout=3.0, lease=1.5, archive_keep_events=keep_events,
        )  # fmt: skip
        self.names, self.secrets, self.locations = [], {}, {}
        for index in (1, 2, 3):
            node = f"{self.name}-{index}"
            location = f"postgresql://postgres@127.0.0.1:5432/tec_{self.name.replace('-', '_')}_{index}"
            _, self.secrets[node] = services.register_node(name=node, cluster=cluster, archive_location=location)
            self.names.append(node)
            self.locations[node] = location
        services.assign_leader(cluster, self.names[0], actor=services.Actor("soak"), reason="soak")
        web_env = {**os.environ, "DEBUG": "false", "SECRET_KEY": uuid.uuid4().hex * 2,
                   "WEB_BIND": f"127.0.0.1:{self.port}", "WEB_WORKERS": "1", "WEB_ACCESS_LOG": "false"}  # fmt: skip
        with open(workdir / "web.log", "ab") as log:
            self.web = subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:controlplane.gunicorn_conf", "controlplane.wsgi"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=web_env,
            )  # fmt: skip
        with open(workdir / "supervisor.log", "ab") as log:
            self.supervisor = subprocess.Popen(
                [sys.executable, "manage.py", "supervise", "--interval", "0.5"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DEBUG": "false"},
            )  # fmt: skip
        self.nodes = LocalNodes(f"http://127.0.0.1:{self.port}", settings.REDIS_URL, workdir, env=env)
        try:
            for node in self.names:
                self.nodes.start(node, self.secrets[node])
            self.wait(lambda: self.live() == 3, 90, f"3 live nodes (logs in {workdir})")
        except BaseException:
            self.close()
            raise

    def live(self) -> int:
        return Node.objects.filter(cluster__name=self.name, status="live").count()

    def rows(self) -> dict[str, Node]:
        return {node.name: node for node in Node.objects.filter(cluster__name=self.name)}

    def leader(self) -> str | None:
        row = Cluster.objects.select_related("leader").get(name=self.name)
        return row.leader.name if row.leader else None

    @staticmethod
    def wait(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit(f"soak: timed out waiting for {what}")
            time.sleep(0.2)

    def close(self) -> None:
        self.nodes.stop_all()
        for process in (self.supervisor, self.web):
            process.send_signal(signal.SIGINT if process is self.web else signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        for key in self.redis.scan_iter(match=keys(self.name).pattern, count=1000):
            self.redis.delete(key)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            for location in self.locations.values():
                dbname = location.rsplit("/", 1)[1]
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


class Killer(threading.Thread):
    """Kills a node drawn from the seed every `every` s, starts it again after `down` s,
    and measures how long it takes to follow again."""

    def __init__(self, cluster: SoakCluster, every: float, down: float, seed: int, stop: threading.Event) -> None:
        super().__init__(name="killer", daemon=True)
        self.cluster, self.every, self.down = cluster, every, down
        self.rng = random.Random(seed)
        self.stop = stop
        self.kills: list[dict] = []

    def run(self) -> None:
        cluster = self.cluster
        while not self.stop.wait(self.every):
            victim = self.rng.choice(cluster.names)
            was_leader = victim == cluster.leader()
            cluster.nodes.kill(victim)  # SIGKILL, by its own pid
            killed_at = time.monotonic()
            self.stop.wait(self.down)
            cluster.nodes.start(victim, cluster.secrets[victim])
            restarted_at = time.monotonic()
            rows = cluster.rows()
            target = max(row.archived_position for row in rows.values())
            kill = {"node": victim, "was_leader": was_leader, "at_s": round(killed_at - START, 1)}
            deadline = restarted_at + 300
            while time.monotonic() < deadline:
                row = cluster.rows()[victim]
                if row.status == "live" and row.applied_position >= target and row.last_heartbeat is not None:
                    kill["follows_again_s"] = round(time.monotonic() - restarted_at, 2)
                    kill["installed"] = "INSTALL:" in cluster.nodes.processes[victim].log_path.read_text(errors="replace")
                    break
                time.sleep(0.2)
            else:
                kill["follows_again_s"] = None
            self.kills.append(kill)
            print(f"  kill {len(self.kills)}: {victim} ({'leader' if was_leader else 'follower'}) at "
                  f"{kill['at_s']} s; follows again {kill['follows_again_s']} s after its restart", flush=True)  # fmt: skip


class ArchiveBound:
    """Retention's promise, checked at every sample: each archive holds no more than the
    cut (nodes.protocol.retention.cut) allowed at some moment of the last SLACK_S seconds
    of the node's running time, with the snapshot each node reports as verified and the
    floor the control plane gives.

    Running time, not wall time: a killed node's retention cannot delete anything, and a
    restarted one applies its first cut a round after it measures its archive. So a node's
    clock here advances only across samples where its heartbeat did (its report_seq
    moved), and its cut is recorded from its reported tail even before retention has
    measured the archive (a restarted node catching up moves its tail far faster than
    the load, and retention's round cuts at the tail it saw when the round began)."""

    def __init__(self, cluster: SoakCluster, keep_events: int) -> None:
        self.cluster, self.keep = cluster, keep_events
        self.cuts: dict[str, collections.deque[tuple[float, int]]] = collections.defaultdict(collections.deque)
        self.clock: dict[str, tuple[float, float, tuple]] = {}  # per node: (running time, wall time, last report)
        self.largest: dict[str, dict] = {}  # per node: its largest archive, with its bound then
        self.most_bytes: dict[str, int] = {}  # per node: the most bytes its archive took on disk
        self.tightest: dict[str, dict] = {}  # per node: the sample closest to (or over) its bound
        self.excess: list[str] = []

    def running_time(self, node: Node, now: float) -> tuple[float, bool]:
        """The node's running clock, and whether it ran since the previous sample."""
        report = (node.report_boot, node.report_seq)
        running, wall, seen = self.clock.get(node.name, (0.0, now, report))
        ran = report != seen
        if ran:
            running += now - wall
        self.clock[node.name] = (running, now, report)
        return running, ran

    def sample(self) -> None:
        row = Cluster.objects.get(name=self.cluster.name)
        nodes = list(Node.objects.filter(cluster=row))
        now = time.monotonic()
        floor = services.retention_floor(row, nodes, services.db_now())
        for node in nodes:
            running, ran = self.running_time(node, now)
            tail, first = node.archived_position, node.archive_first_position
            snapshot = node.snapshot_position or None
            cuts = self.cuts[node.name]
            if ran or not cuts:
                cut = retention.cut(first=1, tail=tail, snapshot=snapshot, floor=floor, keep_events=self.keep)
                if snapshot is None or floor is None:
                    cut = 0  # nothing may go: no bound at this moment
                cuts.append((running, cut))
                while cuts[0][0] < running - SLACK_S:
                    cuts.popleft()
            if not first:
                continue  # retention has not measured it yet
            allowed_from = min(c for _t, c in cuts)
            if allowed_from == 0:
                continue
            held, bound = tail - first + 1, tail - allowed_from + 1
            why = min(
                (snapshot or 0, "snapshot"), ((floor or 0) + 1, "lowest live member"), (tail - self.keep + 1, "minimum window")
            )[1]  # fmt: skip
            seen = {"events": held, "bytes": node.archive_bytes, "bound": bound, "held_by": why,
                    "at_s": round(now - START, 1), "floor": floor, "snapshot": snapshot, "tail": tail}  # fmt: skip
            self.most_bytes[node.name] = max(self.most_bytes.get(node.name, 0), node.archive_bytes)
            if held > self.largest.get(node.name, {}).get("events", -1):
                self.largest[node.name] = seen
            if held - bound > self.tightest.get(node.name, {"margin": -(10**12)})["margin"]:
                self.tightest[node.name] = {**seen, "margin": held - bound}
            if held > bound:
                self.excess.append(
                    f"{node.name}'s archive held {held:,} events at {seen['at_s']} s, above its bound {bound:,} "
                    f"(tail {tail:,}, snapshot {snapshot}, lowest live member {floor})"
                )


START = time.monotonic()


def archive_state(location: str) -> tuple[int, str, int]:
    state = NodeState(location)
    try:
        state.recover()
        return state.engine.position, state.engine.digest(), state.log.size().first
    except Exception as error:  # an archive that cannot be rebuilt is a finding, not a crash
        return -1, f"cannot rebuild: {type(error).__name__}: {error}", 0
    finally:
        state.close()


def main() -> None:
    global START
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (default 30)")
    parser.add_argument("--rate", type=int, default=10_000, help="commands/s offered (default 10,000)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--batch", type=int, default=10, help="commands per client batch (default 10)")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills (default 60; 0: none)")
    parser.add_argument("--down", type=float, default=3.0, help="seconds a killed node stays down (default 3)")
    parser.add_argument("--snapshot-every", type=int, default=200_000, help="NODE_SNAPSHOT_EVERY (default 200,000)")
    parser.add_argument("--keep-events", type=int, default=500_000, help="retention's minimum window (default 500,000)")
    parser.add_argument("--give-up", type=float, default=120.0, help="a client gives up after this long without a result (default 120 s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kills (default: random, printed)")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    workdir = Path(tempfile.mkdtemp(prefix="tec-soak-"))
    print(f"soak: {args.minutes} min at {args.rate:,} commands/s, a kill every {args.kill_every} s (seed {seed}), "
          f"snapshot every {args.snapshot_every:,} events, keep {args.keep_events:,}; logs in {workdir}", flush=True)  # fmt: skip
    env = {"NODE_SNAPSHOT_EVERY": str(args.snapshot_every)}
    cluster = SoakCluster(workdir, env, args.keep_events)
    stop = threading.Event()
    report: dict = {"seed": seed, "workdir": str(workdir)}
    failures: list[str] = []
    try:
        client = ClusterClient(cluster.name, settings.REDIS_URL)
        client.submit(AddInstrument(client.client_id, client.next_seq(), "BENCH", tick_size=5, lot_size=1))
        client.close()
        seconds = args.minutes * 60
        load: dict = {}

        def run_load() -> None:
            try:
                load.update(drive(cluster.name, settings.REDIS_URL, args.clients, int(args.rate * seconds),
                                  args.batch, args.rate, args.give_up))  # fmt: skip
            except BaseException as error:  # a client gave up: report it, not a traceback
                load["error"] = f"{type(error).__name__}: {error}"

        START = time.monotonic()
        loader = threading.Thread(target=run_load, name="load", daemon=True)
        loader.start()
        killer = Killer(cluster, args.kill_every, args.down, seed, stop)
        if args.kill_every > 0:
            killer.start()
        steady = args.keep_events + args.snapshot_every + int(SLACK_S * args.rate)
        bound = ArchiveBound(cluster, args.keep_events)
        largest = bound.largest
        printed_at = time.monotonic()
        while loader.is_alive():
            loader.join(1.0)
            bound.sample()
            if time.monotonic() - printed_at >= 60:
                printed_at = time.monotonic()
                sizes = ", ".join(f"{n.rsplit('-', 1)[1]}: {v['events']:,} (bound {v['bound']:,})" for n, v in sorted(largest.items()))
                print(f"  {printed_at - START:6.0f} s: largest archives so far (events) {sizes or '-'}", flush=True)
        stop.set()
        if killer.is_alive():
            killer.join(330)
        report["load"] = dict(load)
        report["kills"] = killer.kills
        report["archive_steady_bound_events"] = steady
        report["largest_archive"] = largest
        report["closest_to_bound"] = bound.tightest
        report["most_bytes"] = bound.most_bytes
        if "error" in load:
            failures.append(f"load: {load['error']}")
        failures += [f"{k['node']} did not follow again after kill at {k['at_s']} s" for k in killer.kills if k["follows_again_s"] is None]
        failures += bound.excess[:10] + ([f"... {len(bound.excess) - 10} more samples above the bound"] if len(bound.excess) > 10 else [])
        if not largest:
            failures.append("retention never reported an archive's size")
        # Settle: every node live at the leader's position, then each archive rebuilt offline.
        report["final"] = {}
        try:
            cluster.wait(lambda: cluster.live() == 3, 120, "3 live nodes after the load")
            cluster.wait(lambda: len({r.applied_position for r in cluster.rows().values()}) == 1, 120, "the nodes to settle")
        except SystemExit as timed_out:  # reported with the rest, not instead of it
            failures.append(str(timed_out))
        cluster.nodes.stop_all()
        states = {name: archive_state(location) for name, location in cluster.locations.items()}
        report["final"] = {name: {"position": p, "digest": d[:16], "first_position": f} for name, (p, d, f) in states.items()}
        if len({(p, d) for p, d, _f in states.values()}) != 1:
            failures.append(f"the archives rebuild to different states: {report['final']}")
    finally:
        stop.set()
        cluster.close()
    report["failures"] = failures
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        load = report.get("load", {})
        print(f"load: {load.get('commands', 0):,} commands committed, {load.get('committed_per_s', 0):,}/s, "
              f"p50 {load.get('p50_ms')} ms, p99 {load.get('p99_ms')} ms, max {load.get('max_ms')} ms")  # fmt: skip
        follows = [k["follows_again_s"] for k in report["kills"] if k["follows_again_s"] is not None]
        print(f"kills: {len(report['kills'])}; followed again after {min(follows, default=0):.1f}-{max(follows, default=0):.1f} s "
              f"({sum(k.get('installed', False) for k in report['kills'])} through a snapshot install)")  # fmt: skip
        for name, value in sorted(report["largest_archive"].items()):
            close = report["closest_to_bound"].get(name, value)
            print(f"archive {name}: at most {value['events']:,} events ({value['bytes'] / 1e6:.0f} MB) at {value['at_s']} s, "
                  f"bound then {value['bound']:,} (held by the {value['held_by']}); closest to its bound at {close['at_s']} s: "
                  f"{close['events']:,} of {close['bound']:,}; steady-state bound {steady:,}; "
                  f"at most {report['most_bytes'].get(name, 0) / 1e6:.0f} MB on disk")  # fmt: skip
        for name, value in sorted(report["final"].items()):
            print(f"final {name}: position {value['position']:,}, digest {value['digest']}, holds from {value['first_position']:,}")
        print("OK: every check passed" if not failures else "FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
