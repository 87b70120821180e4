"""`manage.py drill`: the real-process fault drill of a cluster, and its history checker."""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from controlplane.drill.checker import check
from controlplane.drill.faults import PARTITION_LINKS
from controlplane.drill.report import render, write_json
from controlplane.drill.run import Drill, DrillOptions

FAULT_OPTIONS = {  # option -> fault kind (controlplane/drill/faults.py)
    "kills": "kill",
    "pauses": "pause",
    "redis_restarts": "redis-restart",
    "pg_restarts": "pg-restart",
    "poison": "poison",
    "clock_steps": "clock-step",
    "cuts": "cut",
    "switchovers": "switchover",
    "quorum_changes": "quorum-change",
    "leader_kills": "leader-kill",
    "partitions": "partition",
    "redis_failovers": "redis-failover",
}


class Command(BaseCommand):
    help = (
        "Start a throwaway cluster on private servers (its own PostgreSQL and Redis in a temp "
        "dir, a control plane, a supervisor, N+1 node workers), drive a load of commands with "
        "unique idempotency keys through the Redis client, inject faults on a schedule drawn "
        "from --seed, then check the history against every archive: 0 acknowledged commands "
        "lost, 0 applied twice, logs contiguous and agreeing, one leader per term, equal state "
        "digests, and the time to recover from each fault. Exits non-zero on any violation. "
        "With --check, only checks a history written before. (--attach to a running cluster "
        "is not implemented: the drill restarts and kills servers, so it runs its own.)"
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs["formatter_class"] = argparse.RawDescriptionHelpFormatter
        kwargs["epilog"] = (
            "examples:\n"
            "  manage.py drill --kills 2 --pauses 1 --poison 3 --commands 2000          # a short drill\n"
            "  manage.py drill --kills 20 --pauses 10 --redis-restarts 3 --pg-restarts 3 \\\n"
            "      --poison 20 --clock-steps 5 --commands 20000 --report report.json    # the long one\n"
            "  manage.py drill --check history.jsonl --archives drill-node-1=postgresql://...  # check only\n"
            "  manage.py drill --topology netns --partitions 10 --leader-kills 5 --redis-failovers 2 \\\n"
            "      --commands 20000 --report topology-report.json   # a host each (root): partitions, Sentinel\n"
        )
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser) -> None:
        load = parser.add_argument_group("load")
        load.add_argument("--commands", type=int, default=2000, help="commands to commit in all (default 2000)")
        load.add_argument("--clients", type=int, default=4, help="client threads, one client id each (default 4)")
        load.add_argument("--rate", type=float, default=250.0, help="commands/s offered in all (default 250)")
        faults = parser.add_argument_group("faults (counts; one at a time, spread over the load)")
        faults.add_argument("--seed", type=int, help="seed of the fault schedule and the load (default: random, printed)")
        faults.add_argument("--kills", type=int, default=0, help="SIGKILL the leader or a follower; restarted after --restart-delay")
        faults.add_argument("--pauses", type=int, default=0, help="SIGSTOP the leader or a follower past its lease, then SIGCONT")
        faults.add_argument("--redis-restarts", type=int, default=0, help="SIGKILL Redis and start it again, empty")
        faults.add_argument("--pg-restarts", type=int, default=0, help="restart PostgreSQL (fast) or terminate every connection")
        faults.add_argument("--poison", type=int, default=0, help="malformed entries on the command, ack and live streams, and malformed requests to the nodes")
        faults.add_argument("--clock-steps", type=int, default=0, help="restart a follower under faketime with a clock offset")
        faults.add_argument("--cuts", type=int, default=0, help="cut or delay the network between one node and Redis or the control plane")
        faults.add_argument("--switchovers", type=int, default=0, help="one or two concurrent switchovers through the API")
        faults.add_argument("--quorum-changes", type=int, default=0, help="write quorum 1 -> 2 -> 1 through the API")
        faults.add_argument("--leader-kills", type=int, default=0, help="SIGKILL the leader; restarted after --restart-delay")
        faults.add_argument("--partitions", type=int, default=0,
                            help="(netns) nft cuts a link for a while: node-Redis, node-control plane, node-its database, "
                                 "leader-follower or control plane-Redis")  # fmt: skip
        faults.add_argument("--partition-links", nargs="+", choices=PARTITION_LINKS, default=list(PARTITION_LINKS),
                            metavar="LINK", help=f"the links partitions cut, drawn from the seed (default all: {' '.join(PARTITION_LINKS)})")  # fmt: skip
        faults.add_argument("--redis-failovers", type=int, default=0,
                            help="(netns) SIGKILL the Redis primary: Sentinel promotes the replica")  # fmt: skip
        faults.add_argument("--restart-delay", type=float, default=1.0, help="seconds before a killed process is restarted (default 1)")
        cluster = parser.add_argument_group("cluster")
        cluster.add_argument("--replicas", type=int, default=2, help="replicas N (followers; N+1 nodes) (default 2)")
        cluster.add_argument("--write-quorum", type=int, default=1, help="write quorum W (default 1)")
        cluster.add_argument("--topology", choices=("local", "netns"), default="local",
                             help="local: every process on 127.0.0.1 with one PostgreSQL and one Redis (default); "
                                  "netns: a network namespace per host (root, ip, nft): each node with its own "
                                  "PostgreSQL, the control plane with its own, Redis primary + replica + 3 Sentinels, "
                                  "the clients (this process) on another")  # fmt: skip
        output = parser.add_argument_group("output")
        output.add_argument("--history", type=Path, help="write the history here (default: history.jsonl in the work dir)")
        output.add_argument("--report", type=Path, help="write the report as JSON here")
        output.add_argument("--workdir", type=Path, help="work dir for logs and server data (default: a new temp dir)")
        output.add_argument("--keep", action="store_true", help="keep the work dir after a run without violation")
        limits = parser.add_argument_group("patience")
        limits.add_argument("--recovery-timeout", type=float, default=120.0, help="seconds a fault may take to recover before it is a wedge")
        limits.add_argument("--settle-timeout", type=float, default=180.0, help="seconds for every node to be back")
        checking = parser.add_argument_group("check only")
        checking.add_argument("--check", type=Path, metavar="HISTORY", help="check this history instead of running a drill")
        checking.add_argument("--archives", nargs="*", default=[], metavar="NODE=URL",
                              help="the archives to check it against (default: those the history names)")  # fmt: skip
        parser.add_argument("--attach", metavar="URL", help="not implemented: the drill always runs its own cluster")

    def handle(self, *args, **options) -> None:
        if options["attach"]:
            raise CommandError("--attach is not implemented: the drill restarts and kills its servers, so it runs its own")
        if options["check"]:
            return self._check_only(options)
        seed = options["seed"] if options["seed"] is not None else random.randrange(1_000_000)
        counts = {kind: options[name] for name, kind in FAULT_OPTIONS.items() if options[name]}
        if options["commands"] < 10:
            raise CommandError("--commands must be at least 10")
        if not 0 <= options["write_quorum"] <= options["replicas"]:
            raise CommandError(f"--write-quorum must be between 0 and --replicas ({options['replicas']})")
        drill_options = DrillOptions(
            commands=options["commands"], faults=counts, seed=seed, replicas=options["replicas"],
            write_quorum=options["write_quorum"], clients=options["clients"], rate=options["rate"],
            history=options["history"], report=options["report"], workdir=options["workdir"], keep=options["keep"],
            recovery_timeout=options["recovery_timeout"], settle_timeout=options["settle_timeout"],
            restart_delay=options["restart_delay"], topology=options["topology"],
            partition_links=tuple(options["partition_links"]),
        )  # fmt: skip
        local_only = [kind for kind in ("partition", "redis-failover") if counts.get(kind)]
        if local_only and options["topology"] != "netns":
            raise CommandError(f"{', '.join(local_only)} need --topology netns")
        faults = ", ".join(f"{count} {kind}" for kind, count in counts.items()) or "no faults"
        self.say(f"drill: seed {seed} (rerun with --seed {seed}); {options['commands']} commands; {faults}")
        self._run(Drill(drill_options, self.say), drill_options)

    def say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _run(self, drill: Drill, options: DrillOptions) -> None:
        def interrupted(signum, frame):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupted)
        began = time.monotonic()
        try:
            result = drill.run()
        except KeyboardInterrupt:
            self.say(f"\ninterrupted: every process the drill started is stopped\n{drill.kept()}")
            sys.exit(130)
        except Exception as error:
            self.say(f"the drill could not run: {type(error).__name__}: {error}\n{drill.kept()}")
            raise CommandError(f"drill failed: {error}", returncode=2) from error
        finally:
            signal.signal(signal.SIGTERM, previous)
        elapsed = time.monotonic() - began
        header = (f"\nDrill of cluster {result.cluster}, seed {options.seed}: {len(drill.plan)} faults "
                  f"({drill.faults_done} injected) in {elapsed:.0f} s")  # fmt: skip
        self.say(render(result, header))
        extra = {"seed": options.seed, "faults_asked": options.faults, "runtime_s": round(elapsed, 1),
                 "history": str(drill.history_path), "workdir": str(drill.workdir)}  # fmt: skip
        if options.report:
            write_json(result, options.report, extra)
            self.say(f"report written to {options.report}")
        if not result.ok:
            self.say(drill.kept())
            sys.exit(1)
        drill.clean_up(options.keep)
        if options.keep:
            self.say(drill.kept())

    def _check_only(self, options: dict) -> None:
        archives = {}
        for index, item in enumerate(options["archives"], start=1):
            name, sep, url = item.partition("=")
            if not sep or "://" in name:
                name, url = f"archive-{index}", item
            archives[name] = url
        if not options["check"].exists():
            raise CommandError(f"no history at {options['check']}")
        result = check(options["check"], archives or None)
        self.say(render(result, f"Check of {options['check']}"))
        if options["report"]:
            write_json(result, options["report"])
        if not result.ok:
            sys.exit(1)
