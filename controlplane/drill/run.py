"""The drill from start to end: servers, cluster, load, faults, settle, check, clean up.

`run_drill(options)` is what `manage.py drill` calls. Every process it starts is its own
child (controlplane.drill.children) and is stopped in the `finally` block whatever
happens, Ctrl-C included; the work dir (logs, history, the servers' data) is deleted on
success and kept, with its path printed, on failure or with --keep.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controlplane.drill.checker import CONVERGES, RECOVERS, CheckResult, check
from controlplane.drill.children import stop_all_children
from controlplane.drill.cluster import ClusterSettings, DrillCluster
from controlplane.drill.faults import (
    PARTITION_LINKS,
    Injector,
    PlannedFault,
    faketime_available,
    plan_faults,
)
from controlplane.drill.history import History
from controlplane.drill.load import Gate, Load, LoadOptions
from controlplane.drill.servers import PrivatePostgres, PrivateRedis, ServerError
from controlplane.topology.hosts import CONTROLPLANE, Hosts, SentinelRedis
from controlplane.topology.netns import missing_tools


@dataclass
class DrillOptions:
    commands: int = 2000
    faults: dict[str, int] = field(default_factory=dict)  # kind -> count
    seed: int = 1
    replicas: int = 2
    write_quorum: int = 1
    clients: int = 4
    rate: float = 250.0
    history: Path | None = None
    report: Path | None = None
    workdir: Path | None = None
    keep: bool = False
    recovery_timeout: float = 120.0  # seconds a fault may take before it is called a wedge
    settle_timeout: float = 180.0  # seconds for every node to be back (between faults, at the end)
    answer_timeout: float = 90.0  # seconds the clients keep retrying unanswered commands at the end
    restart_delay: float = 1.0
    topology: str = "local"  # local: every process on 127.0.0.1; netns: a host (namespace) each
    partition_links: tuple[str, ...] = PARTITION_LINKS  # the links partitions are drawn among


class Progress:
    """One status line on stderr: redrawn in place on a terminal (tqdm when installed),
    a plain line every 15 s otherwise (CI logs)."""

    def __init__(self, total: int, faults: int) -> None:
        self.total, self.faults = total, faults
        self.tty = sys.stderr.isatty()
        self.bar = None
        if self.tty:
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="cmd", file=sys.stderr, dynamic_ncols=True)
        self._printed_at = 0.0
        self._width = 0
        self.started = time.monotonic()

    def update(self, committed: int, faults_done: int, phase: str) -> None:
        elapsed = time.monotonic() - self.started
        text = f"faults {faults_done}/{self.faults} | {phase[:70]}"
        if self.bar is not None:
            self.bar.n = min(committed, self.total)
            self.bar.set_postfix_str(text, refresh=True)
        elif self.tty:
            line = f"[drill {elapsed:5.0f}s] {committed}/{self.total} committed | {text}"
            sys.stderr.write("\r" + line.ljust(self._width))
            self._width = len(line)
            sys.stderr.flush()
        elif time.monotonic() - self._printed_at > 15:
            self._printed_at = time.monotonic()
            sys.stderr.write(f"[drill {elapsed:5.0f}s] {committed}/{self.total} committed | {text}\n")

    def clear(self) -> None:
        if self.bar is not None:
            self.bar.clear()
        elif self.tty and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.clear()


class Drill:
    """One run: owns the work dir, the servers, the cluster, the load and the injector."""

    def __init__(self, options: DrillOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self._say = say
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="tec-drill-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)  # PostgreSQL runs as another user when we are root
        self.history_path = options.history or self.workdir / "history.jsonl"
        self.history = History(self.history_path)
        self.plan: list[PlannedFault] = []
        self.faults_done = 0
        self.phase = "starting"
        self.failed_early: str | None = None
        self.postgres: PrivatePostgres | None = None
        self.redis: PrivateRedis | SentinelRedis | None = None
        self.hosts: Hosts | None = None
        self.cluster: DrillCluster | None = None
        self.load: Load | None = None
        self.injector: Injector | None = None
        self.progress: Progress | None = None
        self._stop_progress = threading.Event()

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress.clear()
        self._say(message)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> CheckResult:
        try:
            self._start()
            self._drive()
            self._settle_at_end()
            return self._check()
        finally:
            self._stop_progress.set()
            if self.progress is not None:
                self.progress.close()
            self._shutdown()

    def _start(self) -> None:
        options = self.options
        faketime_problem = faketime_available() if options.faults.get("clock-step") else None
        if faketime_problem:
            self.say(f"clock steps will be skipped: {faketime_problem}")
        self.say(f"work dir {self.workdir} (logs in {self.workdir / 'logs'})")
        settings = ClusterSettings(
            replicas=options.replicas, write_quorum=options.write_quorum, restart_delay=options.restart_delay,
            proxied=bool(options.faults.get("cut")) and options.topology == "local",
        )  # fmt: skip
        if options.topology == "netns":
            self._start_hosts(settings)
        else:
            self.postgres = PrivatePostgres(self.workdir)
            self.postgres.init()
            self.postgres.start()
            self.redis = PrivateRedis(self.workdir)
            self.redis.start()
            self.say(f"private PostgreSQL on port {self.postgres.port}, Redis on port {self.redis.port}")
        self.cluster = DrillCluster(self.workdir, self.postgres, self.redis, settings, self.history, self.hosts)
        self.cluster.prepare()
        self.cluster.start()
        self.say(f"control plane at {self.cluster.url}; supervisor; {len(settings.node_names)} nodes "
                 f"(N={settings.replicas}, W={settings.write_quorum})"
                 + (f"; {self.cluster.proxied_node} through the fault proxies" if settings.proxied else ""))  # fmt: skip
        self._wait_settled(self.options.settle_timeout, "the cluster to form")
        self.plan = plan_faults(options.faults, options.commands, options.seed, settings, options.partition_links)
        self.history.record(
            "meta", cluster=settings.name, seed=options.seed, commands=options.commands, faults=options.faults,
            settings=asdict(settings), archives=self.cluster.archives, workdir=str(self.workdir),
            plan=[asdict(fault) for fault in self.plan],
        )  # fmt: skip
        self.injector = Injector(self.cluster, self.history, options.seed, faketime_problem)
        run_id = f"d{uuid.uuid4().hex[:6]}"
        self.load = Load(
            LoadOptions(settings.name, self.redis.url, clients=options.clients, rate=options.rate,
                        seed=options.seed, run_id=run_id,
                        redis_target=self.redis.target if self.hosts else None),
            self.history, Gate(self.plan[0].milestone if self.plan else options.commands, options.commands),
        )  # fmt: skip
        self.load.add_instrument(timeout=self.options.recovery_timeout)
        self.progress = Progress(options.commands, len(self.plan))
        threading.Thread(target=self._progress_loop, name="drill-progress", daemon=True).start()
        self.load.start()

    def _start_hosts(self, settings: ClusterSettings) -> None:
        """A host (network namespace) per node with its own PostgreSQL, one for the control
        plane and its database, Redis primary + replica + three Sentinels, the clients (this
        process moves there)."""
        problem = missing_tools()
        if problem:
            raise ServerError(f"--topology netns: {problem}")
        self.hosts = Hosts(self.workdir, settings.node_names)
        self.hosts.start()
        self.postgres = self.hosts.postgres[CONTROLPLANE]
        self.redis = SentinelRedis(self.hosts)
        self.say(f"topology {self.hosts.network.prefix} on {self.hosts.network.subnet}.0/24:")
        for host, namespace, address, what in self.hosts.describe():
            self.say(f"  {host:<14} {address:<12} {namespace:<28} {what}")

    def _drive(self) -> None:
        """The faults, one at a time, each at its milestone of the load, each waited out."""
        gate = self.load.gate
        busy: list[float] = []  # seconds each fault took, from the wait for every node to its recovery
        for number, fault in enumerate(self.plan):
            self._pace(number, busy)
            self.phase = f"load up to fault {number + 1} ({fault.kind})"
            if not gate.wait_taken(fault.milestone, self.load.stop_sending, self.options.recovery_timeout):
                self._violation(RECOVERS, f"the load did not get to its {fault.milestone}th command before fault {number + 1}")
                return
            began = time.monotonic()
            self.phase = f"waiting for every node before fault {number + 1}"
            if not self._wait_settled(self.options.settle_timeout, f"every node to be back before fault {number + 1}"):
                return
            if gate.exhausted:
                self.say(f"no commands left for faults {number + 1}..{len(self.plan)}: they are not injected "
                         f"(give more --commands)")  # fmt: skip
                return
            gate.flowing(True)  # commands keep coming while the fault happens and until it recovered
            self.phase = f"fault {number + 1}: {fault.kind} {fault.params}"
            record = self.injector.inject(fault)
            self.faults_done += 1
            self.say(f"fault {number + 1}/{len(self.plan)}: {record.variant} -> {record.target}: {record.detail}")
            if not record.skipped:
                self.phase = f"fault {number + 1}: waiting for a commit after {record.variant}"
                if not self._wait_recovered(record.service_back):
                    return
            following = self.plan[number + 1].milestone if number + 1 < len(self.plan) else self.options.commands
            gate.raise_limit(following)
            gate.flowing(False)
            busy.append(time.monotonic() - began)
        self.load.rate = self.options.rate

    def _pace(self, number: int, busy: list[float]) -> None:
        """Offer the commands between two faults over about the time a fault takes (the
        mean of the last few), so that the load lasts as long as the faults do."""
        previous = self.plan[number - 1].milestone if number else 0
        window = max(1, self.plan[number].milestone - previous)
        recent = busy[-5:]
        seconds = sum(recent) / len(recent) if recent else 3.0
        self.load.rate = min(self.options.rate, max(10.0, window / max(seconds, 1.0)))

    def _wait_recovered(self, since: float) -> bool:
        deadline = time.monotonic() + self.options.recovery_timeout
        while self.load.stats.newest_committed_attempt < since:
            if not self.load.running:
                self.say("the load ended before this fault recovered (no command left to measure it): give more --commands")
                return False
            if time.monotonic() > deadline:
                state = self.cluster.state_or_none()
                self._violation(RECOVERS, f"WEDGE: no command sent after {time.strftime('%H:%M:%S', time.localtime(since))} "
                                f"committed within {self.options.recovery_timeout:.0f} s; "
                                f"cluster: {state.describe() if state else 'control plane not answering'}")  # fmt: skip
                return False
            time.sleep(0.05)
        return True

    def _wait_settled(self, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        why, phase = "", self.phase
        while time.monotonic() < deadline:
            why = self.cluster.unsettled(self.cluster.state_or_none())
            if why is None:
                return True
            self.phase = f"{phase}: {why}"
            time.sleep(0.1)
        self._violation(CONVERGES, f"timed out after {timeout:.0f} s waiting for {what}: {why}")
        return False

    def _settle_at_end(self) -> None:
        """Let the load finish, then wait until every node holds what the leader holds."""
        # After a wedge, no new commands: the ones in flight still get their chance.
        self.load.gate.close(self.load.gate.taken if self.failed_early else self.options.commands)
        self.phase = "finishing the load"
        expected = (self.options.commands - self.load.gate.taken) / max(1.0, self.options.rate)
        deadline = time.monotonic() + expected + self.options.recovery_timeout
        while self.load.running and time.monotonic() < deadline:
            time.sleep(0.2)
        self.load.finish(self.options.answer_timeout)
        self.phase = "waiting for every node to catch up"
        deadline = time.monotonic() + self.options.settle_timeout
        stable, why, state = 0, "", None
        while stable < 3 and time.monotonic() < deadline:
            state = self.cluster.state_or_none()
            why = self.cluster.unsettled(state)
            if why is None:
                positions = {row.archived_position for row in state.nodes.values()}
                why = None if len(positions) == 1 else f"positions differ: {sorted(positions)}"
            stable = stable + 1 if why is None else 0
            time.sleep(0.5)
        if stable < 3:
            self._violation(CONVERGES, f"the cluster did not settle within {self.options.settle_timeout:.0f} s: {why}")
        self.injector.record_dead_letters("at the end")
        api = self.cluster.api
        with contextlib.suppress(Exception):
            state = state or self.cluster.state()
        try:
            changes = api.role_changes(self.cluster.settings.name)
        except Exception as error:
            changes = []
            self.say(f"could not read the role changes: {error}")
        self.history.record(
            "final", leader=state.leader if state else None, term=state.term if state else None,
            positions={name: row.archived_position for name, row in (state.nodes.items() if state else [])},
            role_changes=[{key: change.get(key) for key in ("term", "old_leader", "new_leader", "reason", "created_at")}
                          for change in changes],
            leader_claims=self.cluster.leader_claims(), load_errors=self.load.stats.errors,
        )  # fmt: skip
        self.phase = "stopping the nodes"
        self.cluster.stop()

    def _check(self) -> CheckResult:
        self.phase = "checking the archives"
        self.history.close()
        return check(self.history_path, self.cluster.archives)

    def _violation(self, invariant: str, detail: str) -> None:
        self.failed_early = detail
        self.history.record("violation", invariant=invariant, detail=detail)
        self.say(f"VIOLATION [{invariant}] {detail}")

    def _progress_loop(self) -> None:
        while not self._stop_progress.wait(0.5):
            stats = self.load.stats
            self.progress.update(stats.committed, self.faults_done, self.phase)

    def _shutdown(self) -> None:
        if self.load is not None:
            self.load.stop_sending.set()
            self.load.give_up_at = time.monotonic()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.stop()
        if self.injector is not None:
            with contextlib.suppress(Exception):
                self.injector.redis.close()
        if self.hosts is not None:
            for problem in self.hosts.stop():  # servers by pid, then the namespaces
                self._say(f"teardown: {problem}")
        else:
            for server in (self.redis, self.postgres):
                if server is not None:
                    with contextlib.suppress(Exception):
                        server.stop()
        stop_all_children()
        with contextlib.suppress(Exception):
            self.history.close()

    def clean_up(self, keep: bool) -> None:
        """Delete the work dir and the servers' data unless asked to keep them."""
        if keep:
            return
        if self.hosts is not None:
            self.hosts.remove_data()
        elif self.postgres is not None:
            self.postgres.remove()
        if self.options.history is None or self.workdir not in self.history_path.parents:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kept(self) -> str:
        """Where to look after a failed (or kept) run, and how to check its history again."""
        lines = [f"logs: {self.workdir / 'logs'} (nodes, control plane, supervisor, PostgreSQL, Redis)",
                 f"history: {self.history_path}"]  # fmt: skip
        if self.hosts is not None:
            lines.append("archives: each node's PostgreSQL data is under " + ", ".join(
                str(server.data_dir) for server in self.hosts.postgres.values()) + " (its host is gone: "
                "start one with `postgres -D DIR -c listen_addresses=127.0.0.1` to check its log)")  # fmt: skip
        elif self.postgres is not None:
            lines.append(f"archives: start their PostgreSQL with `{self.postgres.start_command()}`, then "
                         f"`manage.py drill --check {self.history_path}`")  # fmt: skip
        return "\n".join(lines)
