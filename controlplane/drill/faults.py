"""The faults: a schedule drawn from the seed, and the injectors that carry each one out.

Faults happen one at a time, between milestones of the load (so many commands sent),
in an order and with parameters drawn from `--seed`; which node is the leader at that
moment decides the actual target. Each injector returns a `FaultRecord` for the
history: what was done to whom, from when to when. The drill waits after each fault
until a command sent after it has committed (its recovery) and every node is back.

Kinds (the option that asks for them):
  kill          --kills           SIGKILL the leader or a follower; the runner restarts it
  pause         --pauses          SIGSTOP the leader or a follower past its lease, then SIGCONT
  redis-restart --redis-restarts  SIGKILL the private Redis and start it again, empty
  pg-restart    --pg-restarts     fast shutdown + start of the private PostgreSQL, or
                                  pg_terminate_backend of every client connection
  poison        --poison          malformed entries on the command, ack, live and peer-request
                                  streams (controlplane.drill.poison)
  clock-step    --clock-steps     restart a follower under faketime with a clock offset
  cut           --cuts            cut or delay the path between one node and Redis or the control plane
  switchover    --switchovers     one or two concurrent switchovers through the API
  quorum-change --quorum-changes  write quorum up to 2 and back through the API
  leader-kill   --leader-kills    SIGKILL the leader (as kill, the leader always)
On a topology (--topology netns), each part on a host of its own:
  partition     --partitions      nft drops every packet between two parts for a while: a
                                  node and Redis, a node and the control plane, a node and
                                  its own database, the leader and one follower, the control
                                  plane and Redis
  redis-failover --redis-failovers SIGKILL the Redis primary: the Sentinels promote the
                                  replica; the killed server comes back as a replica
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import redis as redis_lib

from controlplane.drill.api import ApiUnavailable
from controlplane.drill.cluster import ClusterSettings, DrillCluster
from controlplane.drill.history import History
from controlplane.drill.poison import POISON_STREAMS, Poisoner
from controlplane.topology.hosts import CONTROLPLANE, POSTGRES_PORT

FAULT_KINDS = (
    "kill", "pause", "redis-restart", "pg-restart", "poison",
    "clock-step", "cut", "switchover", "quorum-change",
    "leader-kill", "partition", "redis-failover",
)  # fmt: skip
TOPOLOGY_ONLY = ("partition", "redis-failover")
PARTITION_LINKS = ("node-redis", "node-controlplane", "node-db", "leader-follower", "controlplane-redis")


@dataclass(frozen=True)
class PlannedFault:
    index: int
    kind: str
    milestone: int  # commands taken by the load before this fault
    params: dict


@dataclass
class FaultRecord:
    kind: str
    variant: str  # groups recovery times: "kill leader", "pg-restart terminate", ...
    target: str
    detail: str
    started: float  # time.time()
    ended: float = 0.0
    # Its recovery is the first committed answer received after this (and sent after
    # `started`): for a server restart, once the server is back, so that a commit that
    # slipped through while it was shutting down does not count. Default: `started`.
    service_back: float = 0.0
    skipped: bool = False


def plan_faults(counts: dict[str, int], commands: int, seed: int, settings: ClusterSettings,
                links: tuple[str, ...] = PARTITION_LINKS) -> list[PlannedFault]:  # fmt: skip
    """The faults in the order and with the parameters the seed gives, spread over the load
    (partitions drawn among `links`)."""
    rng = random.Random(f"{seed}:faults")
    kinds = [kind for kind in FAULT_KINDS for _ in range(counts.get(kind, 0))]
    rng.shuffle(kinds)
    # Milestones over the first 85%: the rest is a reserve the load draws on while the
    # last faults recover (the load flows freely during each fault).
    spacing = 0.85 * commands / (len(kinds) + 1) if kinds else commands
    planned = []
    for index, kind in enumerate(kinds):
        milestone = int(spacing * (index + 1) + rng.uniform(-0.3, 0.3) * spacing)
        planned.append(PlannedFault(index, kind, max(1, min(commands - 1, milestone)), _params(kind, rng, settings, links)))
    return planned


def _params(kind: str, rng: random.Random, settings: ClusterSettings, links: tuple[str, ...] = PARTITION_LINKS) -> dict:
    if kind == "leader-kill":
        return {"role": "leader", "restart_after": round(rng.uniform(0.5, 2.5 * settings.failover_timeout), 2)}
    if kind == "partition":
        # From shorter than the lease (nothing should move) to past the failover timeout.
        return {"link": rng.choice(links), "role": rng.choice(("leader", "follower")),
                "seconds": round(rng.uniform(settings.lease * 0.5, settings.failover_timeout * 3), 2)}  # fmt: skip
    if kind in ("kill", "pause"):
        params = {"role": rng.choice(("leader", "follower"))}
        if kind == "kill":
            # Sometimes back before the failover timeout (a crash-restart: the leader may
            # keep its term), mostly after it (a failover, then a rejoin).
            params["restart_after"] = round(rng.uniform(0.5, 2.5 * settings.failover_timeout), 2)
        if kind == "pause":
            # Past the lease always; past the failover timeout (a failover) most times.
            params["seconds"] = rng.choice((settings.lease * 1.6, settings.failover_timeout + 1.0, settings.failover_timeout + 1.0))
        return params
    if kind == "pg-restart":
        return {"mode": rng.choice(("restart", "terminate"))}
    if kind == "poison":
        return {"stream": rng.choice(POISON_STREAMS), "variant": rng.randrange(1000)}
    if kind == "clock-step":
        return {"offset": f"{rng.choice('+-')}{rng.randint(10, 600)}s"}
    if kind == "cut":
        mode = rng.choice(("hold", "reset", "delay"))
        return {"path": rng.choice(("redis", "controlplane")), "mode": mode,
                "seconds": round(rng.uniform(1.0, 4.0), 2), "delay": round(rng.uniform(0.05, 0.4), 3)}  # fmt: skip
    if kind == "switchover":
        return {"concurrent": rng.random() < 0.6}
    if kind == "quorum-change":
        return {"seconds": round(rng.uniform(1.0, 4.0), 2)}
    return {}


def faketime_available(install: bool = True) -> str | None:
    """None if `faketime` can be used, else why not. Installs Debian's package when root."""
    if shutil.which("faketime"):
        return None
    if not install or not shutil.which("apt-get"):
        return "faketime is not installed (apt-get install faketime)"
    if os.geteuid() != 0:
        return "faketime is not installed and the drill is not root to install it (apt-get install faketime)"
    result = subprocess.run(
        ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=180", "faketime"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if shutil.which("faketime"):
        return None
    return f"faketime could not be installed: {(result.stderr or result.stdout).strip()[-300:]}"


class Injector:
    """Carries out planned faults on the running cluster; one fault at a time."""

    def __init__(self, cluster: DrillCluster, history: History, seed: int, faketime_problem: str | None) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = random.Random(f"{seed}:targets")
        self.faketime_problem = faketime_problem
        self.redis = cluster.redis.client()
        self.poisoner = Poisoner(self.redis, cluster)
        self.original_write_quorum = cluster.settings.write_quorum

    def inject(self, fault: PlannedFault) -> FaultRecord:
        method = getattr(self, "_" + fault.kind.replace("-", "_"))
        record: FaultRecord = method(fault.params)
        record.ended = record.ended or time.time()
        record.service_back = record.service_back or record.started
        self.history.record(
            "fault", index=fault.index, kind=record.kind, variant=record.variant, target=record.target,
            detail=record.detail, skipped=record.skipped, at=record.started, end=record.ended,
            service_back=record.service_back,
        )  # fmt: skip
        return record

    # -- targets ---------------------------------------------------------------------------

    def _target(self, role: str, patience: float = 10.0) -> str | None:
        """The current leader, or a follower drawn from the seed; None if no leader is known."""
        deadline = time.monotonic() + patience
        state = self.cluster.state_or_none()
        while (state is None or state.leader is None) and time.monotonic() < deadline:
            time.sleep(0.2)  # the control plane may be busy a moment
            state = self.cluster.state_or_none()
        if state is None or state.leader is None:
            return None
        if role == "leader":
            return state.leader
        return self.rng.choice(sorted(name for name in self.cluster.nodes.children if name != state.leader))

    def _skipped(self, kind: str, variant: str, why: str) -> FaultRecord:
        return FaultRecord(kind, variant, "-", f"skipped: {why}", time.time(), skipped=True)

    # -- processes -------------------------------------------------------------------------

    def _leader_kill(self, params: dict) -> FaultRecord:
        return self._kill(params)

    def _kill(self, params: dict) -> FaultRecord:
        name = self._target(params["role"])
        if name is None:
            return self._skipped("kill", f"kill {params['role']}", "no leader known")
        child = self.cluster.nodes.children[name]
        self.cluster.runner.expect_exit(name, restart_after=params["restart_after"])
        started = time.time()
        pid = child.pid
        child.kill()
        return FaultRecord("kill", f"kill {params['role']}", name,
                           f"SIGKILL {name} (pid {pid}); the runner restarts it after {params['restart_after']:.1f} s",
                           started)  # fmt: skip

    def _pause(self, params: dict) -> FaultRecord:
        name = self._target(params["role"])
        if name is None:
            return self._skipped("pause", f"pause {params['role']}", "no leader known")
        child = self.cluster.nodes.children[name]
        started = time.time()
        child.signal_group(signal.SIGSTOP)
        time.sleep(params["seconds"])
        child.signal_group(signal.SIGCONT)
        return FaultRecord("pause", f"pause {params['role']}", name,
                           f"SIGSTOP {name} (pid {child.pid}) for {params['seconds']:.1f} s, then SIGCONT", started)  # fmt: skip

    def _clock_step(self, params: dict) -> FaultRecord:
        if self.faketime_problem:
            return self._skipped("clock-step", "clock-step", self.faketime_problem)
        name = self._target("follower")
        if name is None:
            return self._skipped("clock-step", "clock-step", "no leader known")
        started = time.time()
        with self.cluster.runner.hold(name):
            self.cluster.nodes.children[name].stop(timeout=30)
            self.cluster.clock_offsets[name] = params["offset"]
            self.cluster.start_node(name)
        return FaultRecord("clock-step", "clock-step", name,
                           f"restarted {name} under faketime -f {params['offset']!r} (its clock stays off)", started)  # fmt: skip

    # -- servers ---------------------------------------------------------------------------

    def _redis_restart(self, params: dict) -> FaultRecord:
        if self.cluster.hosts is not None:
            return self._skipped("redis-restart", "redis-restart", "on a topology Redis fails over instead (--redis-failovers)")
        self.record_dead_letters("before a Redis restart")
        started = time.time()
        down = self.cluster.redis.restart()
        return FaultRecord("redis-restart", "redis-restart", "redis",
                           f"SIGKILL Redis (port {self.cluster.redis.port}) and started it again empty; down {down:.2f} s",
                           started, service_back=time.time())  # fmt: skip

    def _pg_restart(self, params: dict) -> FaultRecord:
        started = time.time()
        if params["mode"] == "restart":
            down = self.cluster.postgres.restart()
            detail = f"fast shutdown and start of PostgreSQL (port {self.cluster.postgres.port}); down {down:.2f} s"
        else:
            cut = self.cluster.postgres.terminate_backends()
            detail = f"pg_terminate_backend on {cut} client connections"
        return FaultRecord("pg-restart", f"pg-restart {params['mode']}", "postgres", detail, started, service_back=time.time())

    # -- the network -----------------------------------------------------------------------

    def _cut(self, params: dict) -> FaultRecord:
        node = self.cluster.proxied_node
        proxy = self.cluster.proxies.get(params["path"])
        variant = f"cut {params['path']} {params['mode']}"
        if node is None or proxy is None:
            return self._skipped("cut", variant, "no node runs through the fault proxy")
        started = time.time()
        if params["mode"] == "delay":
            proxy.delay(params["delay"])
            what = f"{params['delay'] * 1000:.0f} ms delay"
        else:
            proxy.cut(params["mode"])
            what = "partition (held)" if params["mode"] == "hold" else "connections reset and refused"
        time.sleep(params["seconds"])
        proxy.heal()
        role = self._role_of(node)
        return FaultRecord("cut", variant, node,
                           f"{what} between {node} ({role}) and {params['path']} for {params['seconds']:.1f} s", started)  # fmt: skip

    def _partition(self, params: dict) -> FaultRecord:
        """Drop every packet between two parts of the topology for `seconds`, then heal."""
        link, hosts = params["link"], self.cluster.hosts
        variant = f"partition {link}"
        if hosts is None:
            return self._skipped("partition", variant, "partitions need the topology (--topology netns)")
        state = self.cluster.state_or_none()
        if state is None or state.leader is None:
            return self._skipped("partition", variant, "no leader known")
        followers = sorted(name for name in self.cluster.nodes.children if name != state.leader)
        node = state.leader if params["role"] == "leader" or link == "leader-follower" else self.rng.choice(followers)
        if link == "node-redis":
            a, b, port, what = node, hosts.redis_addresses(), None, f"{node} and Redis (both servers, every Sentinel)"
        elif link == "node-controlplane":
            a, b, port, what = node, (hosts.address(CONTROLPLANE),), None, f"{node} and the control plane"
        elif link == "node-db":
            a, b, port, what = node, (hosts.address(node),), POSTGRES_PORT, f"{node} and its own PostgreSQL"
        elif link == "leader-follower":
            other = self.rng.choice(followers)
            a, b, port, what = node, (hosts.address(other),), None, f"leader {node} and follower {other}"
        else:
            a, b, port, what = CONTROLPLANE, hosts.redis_addresses(), None, "the control plane and Redis"
        role = "" if link in ("controlplane-redis", "leader-follower") else f" ({'leader' if node == state.leader else 'follower'})"
        cut = hosts.network.cut(a, b, port=port, label=link)
        started = time.time()  # measured from when the cut is in force
        try:
            time.sleep(params["seconds"])
        finally:
            hosts.network.heal(cut)
        return FaultRecord("partition", variant, node if link != "controlplane-redis" else CONTROLPLANE,
                           f"nft drop between {what}{role} for {params['seconds']:.1f} s, then healed", started)  # fmt: skip

    def _redis_failover(self, params: dict) -> FaultRecord:
        if self.cluster.hosts is None:
            return self._skipped("redis-failover", "redis-failover", "Sentinel failover needs the topology (--topology netns)")
        self.record_dead_letters("before a Redis failover")
        old, new, promoted, killed_at = self.cluster.redis.kill_primary()
        return FaultRecord("redis-failover", "redis-failover", old,
                           f"SIGKILL the Redis primary on {old}; the Sentinels promoted {new} after {promoted:.2f} s; "
                           f"{old} is back as its replica (empty, resynced)", killed_at)  # fmt: skip

    def _role_of(self, node: str) -> str:
        state = self.cluster.state_or_none()
        return "leader" if state and state.leader == node else "follower"

    # -- operators ---------------------------------------------------------------------------

    def _switchover(self, params: dict) -> FaultRecord:
        state = self.cluster.state_or_none()
        if state is None or state.leader is None:
            return self._skipped("switchover", "switchover", "no leader known")
        followers = sorted(name for name in self.cluster.nodes.children if name != state.leader)
        targets = followers if params["concurrent"] else [self.rng.choice(followers)]
        outcomes: dict[str, str] = {}
        started = time.time()

        def ask(target: str) -> None:
            try:
                status, body = self.cluster.api.switchover(self.cluster.settings.name, target, state.leader, state.term, timeout=10)
                outcomes[target] = f"{status} " + (f"term {body.get('term')}" if status == 200 else str(body.get("detail", body))[:160])
            except ApiUnavailable as error:
                outcomes[target] = f"unavailable: {error}"[:200]

        threads = [threading.Thread(target=ask, args=(target,)) for target in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        detail = "; ".join(f"to {target}: {outcomes.get(target, 'no answer')}" for target in targets)
        variant = "switchover concurrent" if params["concurrent"] else "switchover single"
        return FaultRecord("switchover", variant, state.leader, f"from {state.leader} (term {state.term}): {detail}", started)

    def _quorum_change(self, params: dict) -> FaultRecord:
        name = self.cluster.settings.name
        started = time.time()
        try:
            status, body = self.cluster.api.set_write_quorum(name, 2)
        except ApiUnavailable as error:
            return FaultRecord("quorum-change", "quorum-change", name, f"W=2 not set: {error}", started)
        raised = f"W=2: {status}" + ("" if status == 200 else f" {str(body)[:160]}")
        time.sleep(params["seconds"])
        deadline = time.monotonic() + 60
        while True:  # lowering always works; only an unreachable control plane delays it
            try:
                back, body = self.cluster.api.set_write_quorum(name, self.original_write_quorum)
                if back == 200 or time.monotonic() > deadline:
                    break
            except ApiUnavailable:
                if time.monotonic() > deadline:
                    back = 0
                    break
            time.sleep(0.5)
        return FaultRecord("quorum-change", "quorum-change", name,
                           f"{raised}; held {params['seconds']:.1f} s; back to W={self.original_write_quorum}: {back}", started)  # fmt: skip

    # -- poison ------------------------------------------------------------------------------

    def _poison(self, params: dict) -> FaultRecord:
        stream = params["stream"]
        started = time.time()
        try:
            entry = self.poisoner.add(stream, params["variant"])
        except (redis_lib.RedisError, LookupError) as error:
            return self._skipped("poison", f"poison {stream}", f"could not add the entry: {error}")
        outcome, handled = self.poisoner.await_outcome(entry)
        self.history.record("poison", stream=stream, key=entry.key, entry=entry.entry_id, expect=entry.expect,
                            handled=handled, outcome=outcome, fields=sorted(entry.fields), at=started)  # fmt: skip
        return FaultRecord("poison", f"poison {stream}", entry.key,
                           f"XADD {entry.key} {entry.entry_id} ({', '.join(sorted(entry.fields))}): {outcome}", started)  # fmt: skip

    def record_dead_letters(self, why: str) -> dict:
        """What the dead-letter stream holds now, in the history (a Redis restart empties it)."""
        try:
            return self.history.record("deadletters", why=why, **self.poisoner.dead_letters())
        except redis_lib.RedisError as error:
            return self.history.record("deadletters", why=why, error=str(error))
