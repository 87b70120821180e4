"""`manage.py cluster`: the operators' command line, like patronictl (list, history, quorum,
pause/resume, switchover, snapshot, submit). Every subcommand takes --help and --json.

Each change goes through the same function the admin and the API call
(controlplane.clusters.maintenance, switchover, services), audited under the actor
"manage.py cluster".
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from controlplane.clusters import dashboard, maintenance, services, switchover
from controlplane.clusters.models import Cluster, Node, OperatorAction, RoleChange
from wire import rpc

ACTOR = services.Actor("manage.py cluster")


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s"


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    line = "+" + "+".join("-" * (width + 2) for width in widths) + "+"
    out = [line, "|" + "|".join(f" {h:<{w}} " for h, w in zip(headers, widths, strict=True)) + "|", line]
    out += ["|" + "|".join(f" {c!s:<{w}} " for c, w in zip(row, widths, strict=True)) + "|" for row in rows]
    out.append(line)
    return "\n".join(out)


class Command(BaseCommand):
    help = (
        "Operate clusters from a shell: list, history, quorum, pause, resume, switchover, "
        "snapshot, submit. `manage.py cluster SUBCOMMAND --help` for each; --json for scripts."
    )

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        def command(name: str, help_text: str):
            p = sub.add_parser(name, help=help_text, description=help_text)
            p.add_argument("--json", action="store_true", help="print JSON instead of text")
            return p

        p = command("list", "A table of each cluster's nodes: role, status, term, positions, lag, heartbeat age.")
        p.add_argument("cluster", nargs="?", help="only this cluster")
        p = command("history", "Role changes (term changes) and other operator actions, newest first.")
        p.add_argument("cluster")
        p.add_argument("--limit", type=int, default=20, help="rows of each kind (default 20)")
        p = command("quorum", "Show the write quorum W of CLUSTER, or set it (0 to N; raising above the live followers is refused).")
        p.add_argument("cluster")
        p.add_argument("write_quorum", nargs="?", type=int, metavar="W")
        p.add_argument("--reason", default="", help="recorded in the audit")
        for name, text in [
            ("pause", "Maintenance mode: the supervisor keeps watching but never fails over CLUSTER until resumed."),
            ("resume", "Turn automatic failover of CLUSTER on again."),
        ]:
            p = command(name, text)
            p.add_argument("cluster")
            p.add_argument("--reason", default="", help="recorded in the audit")
        p = command(
            "switchover",
            "Hand CLUSTER's leadership to FOLLOWER without losing a committed event: the leader "
            "pauses, the follower catches up (progress shown), then the roles swap.",
        )
        p.add_argument("cluster")
        p.add_argument("follower")
        p.add_argument("--expected-leader", help="refuse unless this is the leader (default: the leader now)")
        p.add_argument("--expected-term", type=int, help="refuse unless the cluster is at this term (default: now)")
        p.add_argument("--reason", default="planned switchover from the command line")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds for the catch-up (default 10)")
        p = command("snapshot", "Ask NODE to snapshot its state between two batches, and wait for it.")
        p.add_argument("node")
        p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
        p.add_argument("--no-wait", action="store_true", help="only ask")
        p = command("submit", "Submit one command and print its committed events (as `manage.py submit`).")
        p.add_argument("cluster")
        p.add_argument("type", nargs="?")
        p.add_argument("fields", nargs="*", help="field=value pairs")
        p.add_argument("--command-json", dest="command_json", help="the whole command as JSON")
        p.add_argument("--timeout", type=float, default=5.0)

    def handle(self, *args, subcommand: str, **options) -> None:
        self.as_json = options.pop("json", False)
        getattr(self, f"do_{subcommand}")(**options)

    # -- output ------------------------------------------------------------------------

    def emit(self, data: Any, text: str) -> None:
        self.stdout.write(json.dumps(data, indent=2, default=str) if self.as_json else text)

    def progress(self, text: str) -> None:
        if not self.as_json:
            self.stderr.write(text)
            self.stderr.flush()

    @staticmethod
    def cluster_named(name: str) -> Cluster:
        found = Cluster.objects.select_related("leader").filter(name=name).first()
        if found is None:
            names = ", ".join(Cluster.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no cluster named {name!r} (clusters: {names})")
        return found

    # -- subcommands -------------------------------------------------------------------

    def do_list(self, cluster: str | None, **_) -> None:
        clusters = [self.cluster_named(cluster)] if cluster else list(Cluster.objects.select_related("leader"))
        statuses = [dashboard.cluster_status(c) for c in clusters]
        blocks = []
        for status in statuses:
            c = status["cluster"]
            head = (
                f"Cluster {c['name']}: term {c['term']}, leader {c['leader'] or 'none'}, {c['status']}"
                f"{', PAUSED (no automatic failover)' if c['paused'] else ''}; "
                f"N={c['replica_count']} W={c['write_quorum']}: {c['tolerance']}"
            )
            if c["why_no_leader"]:
                head += f"\n  why no leader: {c['why_no_leader']}"
            elif c["status_message"]:
                head += f"\n  supervisor: {c['status_message']}"
            commit = status["commit"]
            if commit["state"] == "ok":
                head += f"\n  commit position {_number(commit['commit_position'])} of {_number(commit['leader_position'])}"
            rows = [
                [
                    n["name"], n["role"], n["status"] + (" (resyncing)" if n["resyncing"] else ""),
                    n["last_term"], _number(n["archived_position"]), _number(n["applied_position"]),
                    _number(n["lag"]), _age(n["heartbeat_age"]),
                ]
                for n in status["nodes"]
            ]  # fmt: skip
            headers = ["node", "role", "status", "term", "archived", "applied", "lag", "heartbeat"]
            blocks.append(head + "\n" + table(headers, rows))
        self.emit(statuses, "\n\n".join(blocks) if blocks else "no clusters")

    def do_history(self, cluster: str, limit: int, **_) -> None:
        found = self.cluster_named(cluster)
        changes = RoleChange.objects.filter(cluster=found).select_related("old_leader", "new_leader")[:limit]
        actions = OperatorAction.objects.filter(cluster=found).select_related("node")[:limit]
        rows = [
            {
                "time": change.created_at, "term": change.term, "kind": "role change",
                "what": f"{change.old_leader or '-'} -> {change.new_leader or '-'}",
                "actor": change.actor, "reason": change.reason,
            }
            for change in changes
        ] + [
            {
                "time": action.created_at, "term": action.term, "kind": action.action,
                "what": action.detail, "actor": action.actor, "reason": action.reason,
            }
            for action in actions
        ]  # fmt: skip
        rows.sort(key=lambda row: row["time"], reverse=True)
        text = table(
            ["time (UTC)", "term", "kind", "what", "by", "reason"],
            [
                [r["time"].strftime("%Y-%m-%d %H:%M:%S"), r["term"], r["kind"], r["what"][:60], r["actor"], r["reason"][:60]]
                for r in rows
            ],
        )
        self.emit(rows, text)

    def do_quorum(self, cluster: str, write_quorum: int | None, reason: str, **_) -> None:
        found = self.cluster_named(cluster)
        if write_quorum is not None:
            try:
                found = maintenance.set_write_quorum(found.name, write_quorum, actor=ACTOR, reason=reason)
            except services.ServiceError as error:
                raise CommandError(f"write quorum not changed: {error}") from None
        data = {
            "cluster": found.name, "replica_count": found.replica_count,
            "write_quorum": found.write_quorum, "tolerance": found.tolerance,
        }  # fmt: skip
        self.emit(data, f"{found.name}: N={found.replica_count} W={found.write_quorum}: {found.tolerance}")

    def do_pause(self, cluster: str, reason: str, **_) -> None:
        self._set_paused(cluster, True, reason)

    def do_resume(self, cluster: str, reason: str, **_) -> None:
        self._set_paused(cluster, False, reason)

    def _set_paused(self, cluster: str, paused: bool, reason: str) -> None:
        found = maintenance.set_paused(self.cluster_named(cluster).name, paused, actor=ACTOR, reason=reason)
        text = (
            f"{found.name} paused: the supervisor watches but does not fail over until `cluster resume {found.name}`"
            if paused
            else f"{found.name} resumed: automatic failover is on"
        )
        self.emit({"cluster": found.name, "paused": found.paused, "paused_reason": found.paused_reason}, text)

    def do_switchover(self, cluster: str, follower: str, reason: str, timeout: float, **options) -> None:
        found = self.cluster_named(cluster)
        expected_leader = options["expected_leader"] or (found.leader.name if found.leader else None)
        expected_term = found.term if options["expected_term"] is None else options["expected_term"]
        self.progress(f"switchover of {cluster}: {expected_leader or 'no leader'} -> {follower}, term {expected_term}")
        done = threading.Event()
        watcher = threading.Thread(target=self._watch_catch_up, args=(found.pk, follower, done), daemon=True)
        watcher.start()
        try:
            change = switchover.change_leader(
                cluster, follower, actor=ACTOR, reason=reason, expected_term=expected_term,
                expected_leader=expected_leader, timeout=timeout,
            )  # fmt: skip
        except services.ServiceError as error:
            raise CommandError(f"switchover refused: {error}") from None
        finally:
            done.set()
            watcher.join(2)
        data = {"cluster": cluster, "leader": change.new_leader.name, "term": change.term, "reason": change.reason}
        self.emit(data, f"{change.new_leader} is the leader of {cluster} in term {change.term}")

    def _watch_catch_up(self, cluster_id: int, follower: str, done: threading.Event) -> None:
        """Progress of the catch-up, from the node rows the heartbeats update."""
        try:
            while not done.wait(0.5):
                cluster = Cluster.objects.select_related("leader").get(pk=cluster_id)
                target = Node.objects.filter(name=follower).first()
                if cluster.leader is None or target is None:
                    continue
                wanted = cluster.leader.archived_position
                self.progress(
                    f"  catching up: {follower} at {target.archived_position:,} of {wanted:,} "
                    f"({max(0, wanted - target.archived_position):,} to go)"
                )
        finally:
            connection.close()  # this thread's own connection

    def do_snapshot(self, node: str, timeout: float, no_wait: bool, **_) -> None:
        if not Node.objects.filter(name=node).exists():
            raise CommandError(f"no node named {node!r}")
        try:
            request = maintenance.request_snapshot(node, actor=ACTOR)
        except services.ServiceError as error:
            raise CommandError(str(error)) from None
        if no_wait:
            self.emit({"node": node, "task_id": request.id, "status": "asked"}, f"asked {node} to snapshot (request {request.id})")
            return
        self.progress(f"asked {node} to snapshot; waiting up to {timeout:.0f} s")
        started = time.monotonic()
        while not request.ready():
            waited = time.monotonic() - started
            if waited > timeout:
                raise CommandError(f"{node} did not answer within {timeout:.0f} s (is it running?)")
            if int(waited) % 5 == 0 and waited >= 1:
                self.progress(f"  waiting for {node}: {waited:.0f} s")
            time.sleep(1.0)
        try:
            result = request.get(timeout=5)
        except rpc.PeerUnavailable as error:
            raise CommandError(f"snapshot of {node} failed: {error}") from None
        self.emit({"node": node, "task_id": request.id, "status": str(result)}, f"{node}: {result}")

    def do_submit(self, cluster: str, type: str | None, fields: list[str], command_json, timeout, **_) -> None:
        if self.as_json:
            self.stderr.write("note: submit prints its committed events as JSON lines already")
        call_command("submit", cluster, *([type] if type else []), *fields, json_body=command_json,
                     timeout=timeout, stdout=self.stdout, stderr=self.stderr)  # fmt: skip
