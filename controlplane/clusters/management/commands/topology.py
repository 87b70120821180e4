"""`manage.py topology`: the demo cluster on many hosts of one machine (network namespaces), until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from controlplane.drill.children import stop_all_children
from controlplane.drill.cluster import ClusterSettings, DrillCluster
from controlplane.drill.history import History
from controlplane.drill.servers import ServerError
from controlplane.topology.hosts import CLIENTS, CONTROLPLANE, Hosts, SentinelRedis
from controlplane.topology.netns import missing_tools
from dev.local import ROOT

RUN_DIR = ROOT / "run" / "topology"  # the clients' environment and the wrapper that enters their host


class Command(BaseCommand):
    help = (
        "Start the demo cluster on a topology of network namespaces, one host each: every node "
        "with its own PostgreSQL (its archive), the control plane with its own database, Redis "
        "as a primary, a replica and three Sentinels, and a host for the clients. Prints where "
        "everything is and how to run the README's demo commands from the clients' host, then "
        "runs until Ctrl-C (or --for SECONDS), and tears down what it created: every process by "
        "its pid, every namespace by its name. Needs root, ip (iproute2) and nft (nftables)."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs["formatter_class"] = argparse.RawDescriptionHelpFormatter
        kwargs["epilog"] = (
            "examples:\n"
            "  manage.py topology                # start, print, run until Ctrl-C\n"
            "  manage.py topology --demo         # start, run the README's demo commands from the clients' host, stop\n"
            "  run/topology/in-clients .venv/bin/python manage.py submit demo place_order symbol=DEMO side=buy qty=10 price=100 account=alice\n"
        )
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--cluster", default="demo", help="cluster name (default demo)")
        parser.add_argument("--replicas", type=int, default=2, help="replicas N: N+1 nodes, a host each (default 2)")
        parser.add_argument("--write-quorum", type=int, default=1, help="write quorum W (default 1)")
        parser.add_argument("--for", dest="seconds", type=float, help="stop after this many seconds (default: at Ctrl-C)")
        parser.add_argument("--demo", action="store_true",
                            help="run the README's demo commands from the clients' host, print them, stop")  # fmt: skip
        parser.add_argument("--workdir", type=Path, help="logs and server data (default: a new temp dir)")

    def handle(self, *args, **options) -> None:
        problem = missing_tools()
        if problem:
            raise CommandError(f"the topology needs network namespaces: {problem}")
        if not 0 <= options["write_quorum"] <= options["replicas"]:
            raise CommandError("--write-quorum must be between 0 and --replicas")
        workdir = options["workdir"] or Path(tempfile.mkdtemp(prefix="tec-topology-"))
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)
        settings = ClusterSettings(
            name=options["cluster"], replicas=options["replicas"], write_quorum=options["write_quorum"],
            heartbeat_interval=0.5, failover_timeout=3.0, lease=1.5, supervisor_interval=1.0, restart_delay=3.0,
        )  # fmt: skip
        hosts = Hosts(workdir, settings.node_names)
        cluster: DrillCluster | None = None
        previous = {signum: signal.signal(signum, _interrupted) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.say(f"starting the topology in {workdir} (logs in {workdir / 'logs'})")
            hosts.start()
            cluster = DrillCluster(workdir, hosts.postgres[CONTROLPLANE], SentinelRedis(hosts), settings,
                                   History(workdir / "events.jsonl"), hosts)  # fmt: skip
            cluster.env["SECRET_KEY"] = secrets.token_urlsafe(32)
            cluster.prepare()
            cluster.start()
            self._wait_formed(cluster)
            env_file, wrapper = self._write_clients_env(hosts, cluster)
            self._in_clients(wrapper, "manage.py", "demo_instruments", "--cluster", settings.name)
            self._describe(hosts, cluster, env_file, wrapper)
            if options["demo"]:
                self._demo(wrapper, settings.name)
            else:
                self._wait(options["seconds"])
        except KeyboardInterrupt:
            self.say("\ninterrupted")
        except (ServerError, OSError, subprocess.SubprocessError) as error:
            raise CommandError(f"the topology could not run: {error}\n(logs in {workdir / 'logs'})") from error
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.say("tearing down: nodes, control plane, servers (by pid), then the namespaces")
            if cluster is not None:
                cluster.stop()
            for problem in hosts.stop():
                self.say(f"  teardown: {problem}")
            stop_all_children()
            hosts.remove_data()
            for path in RUN_DIR.glob("*"):
                path.unlink()
            self.say(f"stopped; logs kept in {workdir / 'logs'}")

    def say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _wait_formed(self, cluster: DrillCluster, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while (why := cluster.unsettled(cluster.state_or_none())) is not None:
            if time.monotonic() > deadline:
                raise ServerError(f"the cluster did not form within {timeout:.0f} s: {why}")
            time.sleep(0.3)

    def _write_clients_env(self, hosts: Hosts, cluster: DrillCluster) -> tuple[Path, Path]:
        """run/topology/clients.env and run/topology/in-clients (runs a command on the clients' host)."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        env = {
            "DATABASE_URL": cluster.env["DATABASE_URL"], **hosts.redis_env(),
            "CONTROL_PLANE_URL": cluster.url, "OPERATOR": cluster.api.token,
            "DJANGO_SETTINGS_MODULE": "controlplane.settings", "PYTHONPATH": str(ROOT),
        }  # fmt: skip
        env_file = RUN_DIR / "clients.env"
        env_file.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items()))
        os.chmod(env_file, 0o600)
        wrapper = RUN_DIR / "in-clients"
        wrapper.write_text(
            "#!/bin/sh\n# Runs a command on the topology's clients host, with its environment.\n"
            f"set -a; . {env_file}; set +a\ncd {ROOT}\n"
            f"exec ip netns exec {hosts.network.namespace(CLIENTS)} \"$@\"\n"
        )
        os.chmod(wrapper, 0o700)
        return env_file, wrapper

    def _in_clients(self, wrapper: Path, *args: str) -> str:
        result = subprocess.run([str(wrapper), sys.executable, *args], capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise ServerError(f"`{' '.join(args)}` on the clients' host failed ({result.returncode}):\n"
                              f"{(result.stdout + result.stderr)[-3000:]}")  # fmt: skip
        return result.stdout

    def _describe(self, hosts: Hosts, cluster: DrillCluster, env_file: Path, wrapper: Path) -> None:
        self.say(f"\nTopology {hosts.network.prefix}: one network namespace per host on "
                 f"{hosts.network.subnet}.0/24 (bridge in {hosts.network.switch})\n")  # fmt: skip
        self.say(f"  {'host':<14} {'address':<12} {'namespace':<30} runs")
        for host, namespace, address, what in hosts.describe():
            self.say(f"  {host:<14} {address:<12} {namespace:<30} {what}")
        state = cluster.state_or_none()
        self.say(f"\nCluster {cluster.settings.name}: leader {state.leader if state else '?'}, term "
                 f"{state.term if state else '?'}; the Redis primary now: {hosts.primary_name()}")  # fmt: skip
        self.say(f"Control plane: {cluster.url}/admin/ and {cluster.url}/api/docs/ (reachable from the hosts of the topology)")
        self.say(f"Operator token: {cluster.api.token} (as $OPERATOR in {env_file})")
        self.say("\nFrom the clients' host (the README's demo commands):")
        self.say(f"  {wrapper.relative_to(ROOT)} .venv/bin/python manage.py submit {cluster.settings.name} "
                 "place_order symbol=DEMO side=buy qty=10 price=100 account=alice")  # fmt: skip
        self.say(f"  {wrapper.relative_to(ROOT)} .venv/bin/python manage.py cluster list")
        self.say(f"  {wrapper.relative_to(ROOT)} sh -c 'curl -s -H \"Authorization: Token $OPERATOR\" "
                 f"$CONTROL_PLANE_URL/api/v1/clusters/'")  # fmt: skip
        self.say(f"  ip netns exec {hosts.network.namespace(CLIENTS)} sh   # a shell there (source {env_file})")
        self.say("\nCtrl-C stops everything.")

    def _demo(self, wrapper: Path, cluster: str) -> None:
        for side, account in (("buy", "alice"), ("sell", "bob")):
            args = ["manage.py", "submit", cluster, "place_order", "symbol=DEMO", f"side={side}",
                    "qty=10" if side == "buy" else "qty=4", "price=100", f"account={account}"]  # fmt: skip
            self.say(f"\n$ {wrapper.relative_to(ROOT)} .venv/bin/python {' '.join(args)}")
            self.say(self._in_clients(wrapper, *args).rstrip())
        self.say(f"\n$ {wrapper.relative_to(ROOT)} .venv/bin/python manage.py cluster list")
        self.say(self._in_clients(wrapper, "manage.py", "cluster", "list").rstrip())

    def _wait(self, seconds: float | None) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)


def _interrupted(signum, frame):
    raise KeyboardInterrupt
