"""Benchmark of a local cluster: leader + 2 followers as Celery workers on this machine.

Starts a control plane (runserver on a free port, the development database) and three
node workers (N = 2 followers), then for write quorums W = 0, 1, 2 drives the leader with the load
generator: first flat out for a fixed count, then at a fixed offered rate. Latency is
measured from the moment a command batch was due (so a slow cluster cannot hide its
queue) to the moment its committed result arrived. Prints a table; asserts nothing.

    python bench/cluster.py [--count 200000] [--clients 2] [--batch 200] [--rate 10000]
                            [--rate-seconds 10] [--write-quorums 0,1,2] [--runs 1] [--signed] [--json]

--runs 3 --write-quorums 2 is what the performance goals are judged on (README,
"Performance"): three flat-out and fixed-rate runs on one cluster, and a line saying in
how many each goal was met. The machine's own speed (a Python loop, an fsync, a Redis
round trip, the CPU a wake-up costs) is measured before and after and printed with the
figures: on a virtual machine it moves with the neighbours, and figures mean little
without it. For each fixed-rate run it also says how far apart the leader's cycles began
against their floor (NODE_MIN_CYCLE_MS): near the floor the cluster has CPU to spare; well
above it, the cores are what every part waits for.

--signed turns the cluster's trading checks on: the clients are a registered trading
client, each batch signed with its key (HMAC-SHA256), for accounts it was granted; the
leader verifies every batch and checks every command's account before it is logged.
Run with and without it to see what the checks cost.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
import redis as redis_lib  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from psycopg import sql  # noqa: E402

import wire  # noqa: E402
from base.env import env_float  # noqa: E402
from controlplane.clusters import services, trading  # noqa: E402
from controlplane.clusters.models import Cluster, Node, TradingAccount, TradingClient  # noqa: E402
from dev.local import LocalNodes  # noqa: E402
from nodes.config import NodeConfig  # noqa: E402
from nodes.engine import AddInstrument, CancelOrder, PlaceOrder, encode_command  # noqa: E402
from wire.client import ClusterClient  # noqa: E402
from wire.keys import keys  # noqa: E402
from wire.redisconn import DirectConnection  # noqa: E402

SYMBOL = "BENCH"
MID, TICK = 100_000, 5

# The performance goals (README, "Performance"), at R = 2: flat out, a rate and a CPU cost
# per committed command; at 10,000 commands/s offered, a p99 and a CPU cost. The bench
# says which runs meet them; it never fails on them.
GOAL_FLAT_OUT_PER_S, GOAL_FLAT_OUT_US = 60_000, 30.0
GOAL_RATE, GOAL_P99_MS, GOAL_RATE_US = 10_000, 10.0, 50.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command_batches(client_id: str, count: int, batch: int, seed: int, account: str = "") -> list[list[bytes]]:
    """70% limit orders near the touch, 25% cancels, 5% marketable; pre-encoded. The
    account is the client id unless given."""
    account = account or client_id
    rng = random.Random(seed)
    encoded, mine = [], []
    for seq in range(1, count + 1):
        r = rng.random()
        if r < 0.25 and mine:
            command = CancelOrder(client_id, seq, account, mine.pop(rng.randrange(len(mine))))
        else:
            side = rng.choice((1, 2))
            offset = rng.randint(1, 20) * TICK if r < 0.95 else -rng.randint(1, 4) * TICK
            price = MID - offset if side == 1 else MID + offset
            command = PlaceOrder(client_id, seq, account, SYMBOL, side, rng.randint(1, 10), price)
            mine.append(rng.randint(1, max(1, seq * 2)))  # a plausible engine order id
        encoded.append(encode_command(command))
    return [encoded[i : i + batch] for i in range(0, len(encoded), batch)]


def client_process(args: tuple) -> dict:
    """One client connection, one thread, as an integrator would write it with the client
    library: it sends the command batches that are due (at the offered rate, or as fast as
    the window of batches in flight allows) and, between sends, receives results until the
    next batch is due."""
    cluster, redis_url, index, count, batch, rate, window, signer = args
    if signer is None:
        client = ClusterClient(cluster, redis_url, client_id=f"bench-{uuid.uuid4().hex[:6]}-{index}")
        batches = command_batches(client.client_id, count, batch, seed=index)
    else:  # a registered trading client's namespace, key and accounts
        name, keys = signer
        client = ClusterClient(
            cluster, redis_url, client_id=f"{name}.{uuid.uuid4().hex[:6]}-{index}", signing_key=keys[index]
        )
        batches = command_batches(client.client_id, count, batch, seed=index, account=f"{name}-account-{index}")
    due_at: dict[str, float] = {}
    late: list[float] = []  # at the offered rate: how long after it was due each batch went
    latencies: list[float] = []
    interval = batch / rate if rate else 0.0
    cpu_start = time.process_time()  # the client's own work, not the batches made above
    switches_start = context_switches(os.getpid())
    start = time.perf_counter()
    next_due, sent, received = start, 0, 0
    while received < len(batches):
        now = time.perf_counter()
        while sent < len(batches) and (next_due <= now if rate else sent - received < window):
            if rate:
                late.append(time.perf_counter() - next_due)
            entry_id = client.send_encoded(batches[sent])
            due_at[entry_id] = next_due if rate else now
            sent += 1
            next_due += interval
        wait = max(0.0, next_due - time.perf_counter()) if rate and sent < len(batches) else 10.0
        results = client.receive(wait)
        if not results and wait >= 10.0:
            # Returned, not raised: a pool waits forever for a worker that died.
            return {"error": f"client {index} got no result for 10 s ({sent - received} batches waiting)"}
        done = time.perf_counter()
        for entry_id, replies in results:
            latencies.extend([done - due_at.pop(entry_id)] * len(replies))
            received += 1
            refused = next((r for r in replies if r.status in (wire.RESULT_REFUSED, wire.RESULT_MALFORMED)), None)
            if refused is not None:  # a figure of refusals would measure nothing
                return {"error": f"client {index}: a command was refused: {refused.error}"}
    end = time.perf_counter()
    cpu = time.process_time() - cpu_start
    switches = context_switches(os.getpid()) - switches_start
    client.close()
    return {"count": len(latencies), "start": start, "end": end, "latencies": latencies, "cpu": cpu, "late": late,
            "switches": switches}  # fmt: skip


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def context_switches(pid: int) -> int:
    """Context switches of a process so far, voluntary (it waited: a read, a lock, a
    sleep) and not (preempted), summed over its live threads: each is a wake-up, so per
    leader cycle they count the hops a cycle takes through the processes."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        for line in status.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split(":", 1)[1])
    return total


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def scrape(port: int) -> dict[str, float]:
    """A node's loop counters from its metrics port (nodes/metrics.py LoopStats)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict = {"threads": {}}
    for line in text.splitlines():
        for name in ("loop_cycles", "loop_items", "archive_appends", "redis_round_trips"):
            if line.startswith(f"tec_node_{name}_total{{"):
                out[name] = float(line.rsplit(" ", 1)[1])
        if line.startswith("tec_node_thread_cpu_seconds_total{"):
            thread = re.search(r'thread="([^"]*)"', line).group(1)
            out["threads"][thread] = float(line.rsplit(" ", 1)[1])
    return out


class Meter:
    """Where the time goes during one run, from outside the processes: CPU seconds of each
    part (from /proc), each node's loop counters (its metrics port), its archive's
    PostgreSQL transactions (pg_stat_database) and Redis's commands (INFO)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.before = self.sample()

    def sample(self) -> dict:
        cluster = self.cluster
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname, xact_commit FROM pg_stat_database WHERE datname = ANY(%s)",
                (list(cluster.dbnames.values()),),
            ).fetchall()
        commits = dict(rows)
        groups = cluster.cpu_groups()
        return {
            "at": time.perf_counter(),
            # Per process, the groups found again each time: a process born during the run
            # (a PostgreSQL backend) counts from zero.
            "cpu": {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()},
            "switches": {name: {pid: context_switches(pid) for pid in pids} for name, pids in groups.items()},
            "nodes": {name: scrape(port) for name, port in cluster.metric_ports.items()},
            "pg_commits": {name: commits.get(db, 0) for name, db in cluster.dbnames.items()},
            "redis_commands": cluster.redis.info("stats")["total_commands_processed"],
        }

    def result(self, committed: int, client_cpu: float, client_switches: int) -> dict:
        """Cores kept busy per part, CPU µs per committed command per part, context
        switches per leader cycle per part, and per node: cycles/s, items per cycle, Redis
        round trips/s and PostgreSQL transactions/s."""
        after = self.sample()
        before = self.before
        elapsed = after["at"] - before["at"]
        cores = {
            name: sum(seconds - before["cpu"][name].get(pid, 0.0) for pid, seconds in pids.items()) / elapsed
            for name, pids in after["cpu"].items()
        }
        cores["clients"] = client_cpu / elapsed  # measured in the client processes, around their loops
        per_s = committed / elapsed if committed else 0.0
        us = {name: round(share * 1e6 / per_s, 1) if per_s else None for name, share in cores.items()}
        nodes = {}
        for name in self.cluster.metric_ports:
            a, b = after["nodes"][name], before["nodes"][name]
            cycles = a["loop_cycles"] - b["loop_cycles"]
            nodes[name] = {
                "role": "leader" if name == self.cluster.names[0] else "follower",
                "cycles_per_s": round(cycles / elapsed),
                "items_per_cycle": round((a["loop_items"] - b["loop_items"]) / cycles, 1) if cycles else 0,
                "redis_round_trips_per_s": round((a["redis_round_trips"] - b["redis_round_trips"]) / elapsed),
                "pg_commits_per_s": round((after["pg_commits"][name] - before["pg_commits"][name]) / elapsed),
                "thread_cores": {
                    thread: round((seconds - b["threads"].get(thread, 0.0)) / elapsed, 3)
                    for thread, seconds in a["threads"].items()
                    if seconds - b["threads"].get(thread, 0.0) > 0
                },
            }
        switches = {
            name: sum(count - before["switches"][name].get(pid, 0) for pid, count in pids.items())
            for name, pids in after["switches"].items()
        }
        switches["clients"] = client_switches
        leader = self.cluster.names[0]
        leader_cycles = after["nodes"][leader]["loop_cycles"] - before["nodes"][leader]["loop_cycles"]
        return {
            "cores_busy": {name: round(share, 3) for name, share in cores.items()},
            "context_switches_per_cycle": {
                **{name: round(count / leader_cycles, 1) for name, count in switches.items()},
                "total": round(sum(switches.values()) / leader_cycles, 1),
            } if leader_cycles else {},
            "cpu_us_per_command": {**us, "total": round(sum(v for v in us.values() if v is not None), 1)},
            "nodes": nodes,
            "redis_commands_per_s": round((after["redis_commands"] - before["redis_commands"]) / elapsed),
        }


def drive(
    cluster: str, redis_url: str, clients: int, count: int, batch: int, rate: float, window: int, signer=None
) -> dict:
    per_client = count // clients
    per_rate = rate / clients if rate else 0.0
    jobs = [(cluster, redis_url, i, per_client, batch, per_rate, window, signer) for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(client_process, jobs)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise SystemExit("bench: " + "; ".join(errors))
    latencies = sorted(x for r in results for x in r["latencies"])
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = sum(r["count"] for r in results)

    late = sorted(x for r in results for x in r["late"])

    def pct(p: float, values: list[float] = latencies) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    return {
        "commands": total,
        "client_cpu_seconds": sum(r["cpu"] for r in results),
        "client_switches": sum(r["switches"] for r in results),
        "seconds": round(elapsed, 3),
        "committed_per_s": round(total / elapsed),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        # The load generator's own part of the latency (measured from when a batch was due):
        # how late the clients sent, busy receiving or waiting for a core.
        **({"send_late_p50_ms": round(pct(0.50, late), 2), "send_late_p99_ms": round(pct(0.99, late), 2)} if late else {}),
    }


def _loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def wake_cost_us(asleep_s: float, rounds: int) -> float:
    """CPU µs a process spends on one wake-up: it writes a byte down a pipe to a forked
    child and blocks reading the answer, which the child sends after `asleep_s` (0: at
    once). The process's whole CPU over the rounds (its syscalls, the kernel's wake-up
    path, and what a core that ran something else meanwhile costs it), per round."""
    ask_r, ask_w = os.pipe()
    answer_r, answer_w = os.pipe()
    child = os.fork()
    if child == 0:  # the child only echoes, then leaves at once (no cleanup of the parent's)
        try:
            for _ in range(rounds):
                os.read(ask_r, 1)
                if asleep_s:
                    time.sleep(asleep_s)
                os.write(answer_w, b"a")
        finally:
            os._exit(0)
    try:
        start = time.process_time()
        for _ in range(rounds):
            os.write(ask_w, b"q")
            os.read(answer_r, 1)
        return (time.process_time() - start) / rounds * 1e6
    finally:
        os.waitpid(child, 0)
        for fd in (ask_r, ask_w, answer_r, answer_w):
            os.close(fd)


def machine_probe(workdir: Path, redis: redis_lib.Redis) -> dict:
    """How fast this machine is right now, in figures that every part of the cluster
    depends on: a pure-Python loop (millions of iterations/s), an 8 KiB write + fdatasync
    (µs, what each durable commit waits for), a Redis PING round trip (µs), and the CPU
    a process pays to be woken, at once and after 3 ms asleep (µs; a leader cycle at
    10,000/s takes some 50 wake-ups across the processes, each after a few ms asleep).
    Medians of short repeats. Taken before and after the runs: a virtual machine's speed
    moves with its neighbours (on one of ours a pure-Python loop's speed varied by 40%
    within a minute), and a run's figures mean little without the machine's at the time."""
    loops = []
    for _ in range(7):
        start = time.perf_counter()
        _loop(1_000_000)
        loops.append(1.0 / (time.perf_counter() - start))
    syncs = []
    fd = os.open(workdir / "probe.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        block = os.urandom(8192)
        for _ in range(100):
            start = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            syncs.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(workdir / "probe.bin")
    line = DirectConnection(redis)
    trips = []
    try:
        for _ in range(200):
            start = time.perf_counter()
            line.call("PING")
            trips.append(time.perf_counter() - start)
    finally:
        line.close()
    return {
        "python_loop_m_per_s": round(statistics.median(loops), 1),
        "fsync_8k_us": round(statistics.median(syncs) * 1e6),
        "redis_ping_us": round(statistics.median(trips) * 1e6),
        "wake_hot_us": round(statistics.median(wake_cost_us(0.0, 2000) for _ in range(3)), 1),
        "wake_after_3ms_us": round(statistics.median(wake_cost_us(0.003, 200) for _ in range(3)), 1),
    }


def goals_met(write_quorum: int, flat: dict, paced: dict, rate: float) -> dict[str, bool] | None:
    """Which of the performance goals (GOAL_*) one W = 2 run meets; None for another W
    or rate (the goals name none)."""
    if write_quorum != 2:
        return None
    met = {
        "flat_out_rate": flat["committed_per_s"] >= GOAL_FLAT_OUT_PER_S,
        "flat_out_cpu": flat["cpu_us_per_command"]["total"] <= GOAL_FLAT_OUT_US,
    }
    if rate == GOAL_RATE:
        met["p99"] = paced["p99_ms"] <= GOAL_P99_MS
        met["cpu"] = paced["cpu_us_per_command"]["total"] <= GOAL_RATE_US
    return met


def checkpoint() -> None:
    """A PostgreSQL checkpoint before each measured run, outside it: the WAL written before
    (the archives' databases made from their template, earlier runs) would otherwise set one
    off in the middle of some run and not others, a stall of the server's flushes of up to
    seconds in that run's figures only. A run's own WAL (tens of MB) is far below
    max_wal_size, and a run is shorter than checkpoint_timeout. A server where a checkpoint
    is not allowed is measured as it is."""
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as error:
        print(f"bench: no checkpoint before the run ({error}); figures may include one", file=sys.stderr)


class LocalCluster:
    """The control plane and three nodes of a throwaway cluster, cleaned up afterwards."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:6]}"
        self.workdir = workdir
        self.port = free_port()
        self.redis = redis_lib.Redis.from_url(settings.REDIS_URL)
        cluster = Cluster.objects.create(name=self.name, replica_count=2, write_quorum=0, term_write_quorum=0,
                                         heartbeat_interval=0.5, failover_timeout=5.0, lease=2.5)  # fmt: skip
        self.signer: tuple[str, list] | None = None  # with --signed: (trading client, a key per client process)
        self.names, self.secrets, self.locations = [], {}, []
        self.dbnames: dict[str, str] = {}
        self.metric_ports: dict[str, int] = {}
        server = "postgresql://postgres@127.0.0.1:5432"
        for index in (1, 2, 3):
            node = f"{self.name}-{index}"
            location = f"{server}/tec_{self.name.replace('-', '_')}_{index}"
            _, self.secrets[node] = services.register_node(name=node, cluster=cluster, archive_location=location)
            self.names.append(node)
            self.locations.append(location)
            self.dbnames[node] = location.rsplit("/", 1)[1]
            self.metric_ports[node] = free_port()
        services.assign_leader(cluster, self.names[0], actor=services.Actor("bench"), reason="benchmark")
        log = open(workdir / "web.log", "ab")  # noqa: SIM115 - lives as long as the server
        # DEBUG off (as in production: no query log growing in memory), so a key of its own.
        # Served as in production (Procfile: gunicorn), one worker.
        web_env = {**os.environ, "DEBUG": "false", "SECRET_KEY": uuid.uuid4().hex * 2,
                   "WEB_BIND": f"127.0.0.1:{self.port}", "WEB_WORKERS": "1", "WEB_ACCESS_LOG": "false"}  # fmt: skip
        self.web = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:controlplane.gunicorn_conf", "controlplane.wsgi"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=web_env,
        )  # fmt: skip
        self.nodes = LocalNodes(f"http://127.0.0.1:{self.port}", settings.REDIS_URL, workdir, env=env)
        try:
            for node in self.names:
                self.nodes.start(node, self.secrets[node], NODE_METRICS_PORT=str(self.metric_ports[node]))
            self.wait(
                lambda: Node.objects.filter(cluster__name=self.name, status="live").count() == 3,
                90, f"3 live nodes (see the logs in {workdir})",
            )  # fmt: skip
        except BaseException:
            self.close()
            raise

    @staticmethod
    def wait(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: timed out waiting for {what}")
            time.sleep(0.2)

    def cpu_groups(self) -> dict[str, list[int]]:
        """The processes of each part. PostgreSQL and Redis: only the servers this cluster
        uses (other servers on the machine, a test's private ones, are not counted)."""
        pids = [self.nodes.processes[name].pid for name in self.names]
        databases = [*self.dbnames.values(), settings.DATABASES["default"]["NAME"]]
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as conn:
            data_directory = conn.execute("SHOW data_directory").fetchone()[0]
            # The backends of our archives and control plane, and the server's own
            # processes (WAL writer, checkpointer...); not other databases' backends.
            backends = [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) OR backend_type <> 'client backend'",
                (databases,),
            )]  # fmt: skip
        postmaster = int(Path(data_directory, "postmaster.pid").read_text().split()[0])
        return {
            "leader": pids[:1],
            "followers": pids[1:],
            "control plane": [self.web.pid, *children_of(self.web.pid)],
            "postgresql": [postmaster, *backends],
            "redis": [int(self.redis.info("server")["process_id"])],
        }

    def gc_pauses(self) -> dict[str, list[float]]:
        """The GC pauses each node logged (nodes/gcwatch.py logs those of 20 ms or more)."""
        found = {}
        for name in self.names:
            text = self.nodes.processes[name].log_path.read_text(errors="replace")
            found[name] = [float(ms) for ms in re.findall(r"GC pause of ([0-9.]+) ms", text)]
        return found

    def enable_trading_checks(self, clients: int) -> tuple[str, str]:
        """Trading checks on: one trading client granted an account per client process
        and the instruments, with a key per process (a key's nonces must increase in the
        order its batches reach the stream, so two senders never share one) and one for
        the setup; returns the setup's key (id, secret)."""
        name = self.name
        accounts = [TradingAccount.objects.create(name=f"{name}-account-{i}") for i in range(clients)]
        client = TradingClient.objects.create(name=name, may_manage_instruments=True)
        client.accounts.set(accounts)
        keys = [trading.new_key(client) for _ in range(clients + 1)]
        Cluster.objects.filter(name=name).update(trading_checks=True)
        self.signer = (name, [(key.key_id, key.secret) for key in keys[1:]])
        time.sleep(1.5)  # three heartbeat intervals: the leader has the policy
        return keys[0].key_id, keys[0].secret

    def set_write_quorum(self, count: int) -> None:
        Cluster.objects.filter(name=self.name).update(write_quorum=count, term_write_quorum=0)
        time.sleep(1.5)  # three heartbeat intervals: every node has the new value

    def close(self) -> None:
        self.nodes.stop_all()
        self.web.send_signal(signal.SIGINT)  # gunicorn: quick shutdown
        try:
            self.web.wait(15)
        except subprocess.TimeoutExpired:
            self.web.kill()
            self.web.wait(5)
        for key in self.redis.scan_iter(match=keys(self.name).pattern, count=1000):
            self.redis.delete(key)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            for location in self.locations:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(location.rsplit("/", 1)[1])))  # fmt: skip
        Node.objects.filter(cluster__name=self.name).delete()
        Cluster.objects.filter(name=self.name).delete()
        TradingClient.objects.filter(name=self.name).delete()  # its keys go with it
        TradingAccount.objects.filter(name__startswith=f"{self.name}-account-").delete()


def measured(cluster: LocalCluster, clients: int, count: int, batch: int, rate: float, window: int) -> dict:
    checkpoint()
    meter = Meter(cluster)
    run = drive(cluster.name, settings.REDIS_URL, clients, count, batch, rate, window, cluster.signer)
    run.update(meter.result(run["commands"], run.pop("client_cpu_seconds"), run.pop("client_switches")))
    return run


def plot(rows: list[dict], sweep: dict[int, list[dict]], path: str, rate_batch: int) -> None:
    """p50 and p99 against the committed rate, one colour per write quorum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5), dpi=120)
    colours = {0: "tab:green", 1: "tab:blue", 2: "tab:red"}
    for w, runs in sorted(sweep.items()):
        paced = [r for r in runs if r["offered_per_s"]]  # in the order offered
        flat = [r for r in runs if not r["offered_per_s"]]
        colour = colours.get(w)
        rates = [r["committed_per_s"] for r in paced]
        axis.plot(rates, [r["p99_ms"] for r in paced], "o-", color=colour, label=f"W={w} p99")
        axis.plot(rates, [r["p50_ms"] for r in paced], "s--", color=colour, alpha=0.6, label=f"W={w} p50")
        for r in flat:  # flat out: batches of 200, a window in flight; its own marker
            axis.plot([r["committed_per_s"]], [r["p99_ms"]], "*", color=colour, markersize=12)
            axis.plot([r["committed_per_s"]], [r["p50_ms"]], "*", color=colour, markersize=8, alpha=0.6)
    axis.set_yscale("log")
    axis.set_xlabel("committed commands/s (lines: offered loads in batches of 10; stars: flat out, batches of 200)")
    axis.set_ylabel("latency, command due to committed result (ms, log scale)")
    axis.set_title(f"Leader + 2 followers on one 2-core machine, {rate_batch} commands per client batch")
    axis.axhline(10, color="grey", linewidth=0.8, linestyle=":")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(ncol=2, fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def of_run(row: dict, runs: int) -> str:
    """What follows a row's label in the tables: which run it is, when each W has several."""
    return f" (run {row['run']})" if runs > 1 else ""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200_000, help="commands per flat-out run")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--batch", type=int, default=200, help="commands per client batch (flat out)")
    parser.add_argument("--window", type=int, default=8, help="batches in flight per client (flat out)")
    parser.add_argument("--rate", type=float, default=10_000, help="offered commands/s for the latency run")
    parser.add_argument("--rate-batch", type=int, default=10, help="commands per batch at the fixed rate")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="length of the fixed-rate run")
    parser.add_argument(
        "--write-quorums", "--replicas", dest="replicas", default="0,1,2",
        help="write quorums W to measure (N = 2 followers throughout)",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="also sweep offered loads and draw p50/p99 against them")
    parser.add_argument("--plot-rates", default="2000,5000,10000,20000,40000", help="offered loads of the sweep")
    parser.add_argument("--plot-seconds", type=float, default=5.0, help="length of each sweep run")
    parser.add_argument(
        "--signed", action="store_true",
        help="trading checks on: clients sign every batch, the leader verifies it and each command's account",
    )  # fmt: skip
    parser.add_argument(
        "--runs", type=positive_int, default=1,
        help="flat-out and fixed-rate runs per W, one after the other on the same cluster "
        "(the goals are judged on three)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    replicas = [int(r) for r in args.replicas.split(",")]
    # The leader's pacing floor, stated to the nodes so that the figures can name it.
    floor_ms = env_float("NODE_MIN_CYCLE_MS", NodeConfig.min_cycle_s * 1000, minimum=0.0, maximum=50.0)
    env = {"NODE_SNAPSHOT_EVERY": "0", "NODE_GC": os.environ.get("NODE_GC", "freeze"), "NODE_MIN_CYCLE_MS": str(floor_ms)}
    workdir = Path(tempfile.mkdtemp(prefix="tec-bench-"))
    call_command("migrate", verbosity=0)  # the control plane's tables, on a fresh database
    say = (lambda *a: None) if args.json else print
    say(f"starting a control plane and 3 nodes (logs in {workdir}) ...")
    machine = {"before": machine_probe(workdir, redis_lib.Redis.from_url(settings.REDIS_URL))}
    cluster = LocalCluster(workdir, env)
    rows, sweep = [], {}
    try:
        if args.signed:
            key = cluster.enable_trading_checks(args.clients)
            setup = ClusterClient(cluster.name, settings.REDIS_URL, client_id=f"{cluster.name}.setup", timeout=30, signing_key=key)
        else:
            setup = ClusterClient(cluster.name, settings.REDIS_URL, client_id="bench-setup", timeout=30)
        setup.submit(AddInstrument(setup.client_id, 1, SYMBOL, tick_size=TICK, lot_size=1))
        for r in replicas:
            cluster.set_write_quorum(r)
            for run in range(1, args.runs + 1):
                of = f" (run {run} of {args.runs})" if args.runs > 1 else ""
                say(f"W={r}: {args.count} commands flat out{of} ...")
                flat = measured(cluster, args.clients, args.count, args.batch, 0, args.window)
                count = int(args.rate * args.rate_seconds)
                say(f"W={r}: {count} commands at {args.rate:.0f}/s offered{of} ...")
                paced = measured(cluster, args.clients, count, args.rate_batch, args.rate, 10_000)
                rows.append({
                    "write_quorum": r, "run": run, "flat_out": flat, "fixed_rate": {"offered_per_s": args.rate, **paced},
                    "goals_met": goals_met(r, flat, paced, args.rate),
                })  # fmt: skip
            if args.plot:
                sweep[r] = []
                for rate in [float(x) for x in args.plot_rates.split(",")]:
                    say(f"W={r}: sweep at {rate:.0f}/s offered ...")
                    run = measured(cluster, args.clients, int(rate * args.plot_seconds), args.rate_batch, rate, 10_000)
                    sweep[r].append({"offered_per_s": rate, **run})
                sweep[r].append({"offered_per_s": None, **flat})
        gc_pauses = cluster.gc_pauses()
    finally:
        cluster.close()
    machine["after"] = machine_probe(workdir, cluster.redis)
    if args.plot:
        plot(rows, sweep, args.plot, args.rate_batch)
    if args.json:
        print(json.dumps({"clients": args.clients, "batch": args.batch, "rate_batch": args.rate_batch, "signed": args.signed,
                          "gc": env["NODE_GC"], "gc_pauses_over_20ms": gc_pauses, "machine": machine, "rows": rows,
                          "sweep": sweep}))  # fmt: skip
        return
    print()
    print(f"Local cluster: leader + 2 followers, {args.clients} client processes, GC policy {env['NODE_GC']}"
          + (", trading checks on (every batch signed and verified)" if args.signed else ""))  # fmt: skip
    for when in ("before", "after"):
        probe = machine[when]
        print(f"The machine {when} the runs: a Python loop at {probe['python_loop_m_per_s']} M iterations/s, "
              f"8 KiB write + fdatasync {probe['fsync_8k_us']} µs, Redis PING {probe['redis_ping_us']} µs, "
              f"a wake-up {probe['wake_hot_us']} µs of CPU at once, {probe['wake_after_3ms_us']} µs after 3 ms asleep")
    print("| W | flat out: committed cmd/s | p50 ms | p99 ms | max ms "
          f"| {args.rate:,.0f}/s offered: achieved | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        f, p = row["flat_out"], row["fixed_rate"]
        print(f"| {row['write_quorum']}{of_run(row, args.runs)} | {f['committed_per_s']:,} | {f['p50_ms']} | {f['p99_ms']} | {f['max_ms']} "
              f"| {p['committed_per_s']:,} | {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} |")
    judged = [row["goals_met"] for row in rows if row["goals_met"]]
    if judged:
        counts = {goal: sum(met[goal] for met in judged) for goal in judged[0]}
        print(f"Goals at W = 2, in {len(judged)} run(s): flat out >= {GOAL_FLAT_OUT_PER_S:,}/s in "
              f"{counts['flat_out_rate']}, at <= {GOAL_FLAT_OUT_US:g} µs a command in {counts['flat_out_cpu']}"
              + (f"; at {GOAL_RATE:,}/s, p99 <= {GOAL_P99_MS:g} ms in {counts['p99']}, "
                 f"<= {GOAL_RATE_US:g} µs a command in {counts['cpu']}" if "p99" in counts else ""))  # fmt: skip
    for row in rows:
        p = row["fixed_rate"]
        at = f"W={row['write_quorum']} at {args.rate:,.0f}/s{of_run(row, args.runs)}"
        if "send_late_p50_ms" in p:
            print(f"  {at}: the clients sent {p['send_late_p50_ms']} ms late at the median, "
                  f"{p['send_late_p99_ms']} ms at p99 (part of the latency above)")
        leader = next((n for n in p["nodes"].values() if n["role"] == "leader"), None)
        if leader and leader["cycles_per_s"]:
            # Near the floor, the pacer sets the cycle, and a cheaper cycle is less CPU. Well
            # above it, the cores set it: every part waits for CPU, and a cheaper cycle buys
            # more cycles (less latency) before it buys less CPU a command.
            print(f"  {at}: the leader's cycles began {1000 / leader['cycles_per_s']:.1f} ms apart on average "
                  f"(its floor: {floor_ms:g} ms); {sum(p['cores_busy'].values()):.2f} of 2 cores busy")
    print()
    parts = list(rows[0]["flat_out"]["cpu_us_per_command"]) if rows else []
    print("CPU µs per committed command, by part (cores kept busy in brackets; 2 cores in all):")
    print("| W | run | " + " | ".join(parts) + " |")
    print("|---|---|" + "---:|" * len(parts))
    for row in rows:
        for label, run in (("flat out", row["flat_out"]), (f"{args.rate:,.0f}/s", row["fixed_rate"])):
            label += of_run(row, args.runs)
            cells = []
            for part in parts:
                value = run["cpu_us_per_command"][part]
                share = run["cores_busy"].get(part, sum(run["cores_busy"].values()))
                cells.append(f"{value} ({share:.2f})")
            print(f"| {row['write_quorum']} | {label} | " + " | ".join(cells) + " |")
    print()
    print("Per node: loop cycles/s, commands (leader) or events (followers) per cycle, Redis round trips/s "
          "on the loops' connections, PostgreSQL transactions/s in its archive; Redis commands/s in all:")
    for row in rows:
        for label, run in (("flat out", row["flat_out"]), (f"{args.rate:,.0f}/s", row["fixed_rate"])):
            label += of_run(row, args.runs)
            nodes = "; ".join(
                f"{n['role']} {n['cycles_per_s']:,} cycles/s x {n['items_per_cycle']}, "
                f"{n['redis_round_trips_per_s']:,} RT/s, {n['pg_commits_per_s']:,} tx/s"
                for n in run["nodes"].values()
            )
            print(f"  W={row['write_quorum']} {label}: {nodes}; Redis {run['redis_commands_per_s']:,} commands/s")
            switches = ", ".join(f"{part} {count}" for part, count in run["context_switches_per_cycle"].items())
            print(f"      context switches per leader cycle: {switches}")
            for node in list(run["nodes"].values())[:2]:
                threads = ", ".join(f"{t} {c:.3f}" for t, c in sorted(node["thread_cores"].items(), key=lambda x: -x[1]))
                print(f"      {node['role']} threads (cores): {threads}")
    print()
    print(f"GC pauses of 20 ms or more in the nodes (policy {env['NODE_GC']}, whole run):")
    for node, pauses in gc_pauses.items():
        longest = f", longest {max(pauses):.1f} ms" if pauses else ""
        print(f"  {node}: {len(pauses)}{longest}")
    if args.plot:
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
