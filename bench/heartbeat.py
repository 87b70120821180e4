"""Benchmark of the control plane's side of a heartbeat: the CPU one costs it.

Every node beats every heartbeat interval (0.5 s by default), loaded or idle, so this is
a cost the control plane pays whatever the cluster does. The benchmark registers a
throwaway cluster of three nodes in the development database (removed afterwards),
names the first its leader, and posts the nodes' heartbeats, the leader's and the
followers', through Django's whole request handling in this process: the middleware, the
node's authentication, the report's validation, storing it under the node's row lock,
and the answer. No HTTP server: the figure is the control plane's own work. Prints the
CPU per heartbeat, the SQL statements each makes, and how many nodes one core would
serve at the interval. Asserts nothing.

    python bench/heartbeat.py [--count 600] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

import django

django.setup()

import redis as redis_lib  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from controlplane.clusters import services  # noqa: E402
from controlplane.clusters.models import Cluster, Node  # noqa: E402
from wire.keys import keys  # noqa: E402

INTERVAL_S = 0.5  # the default heartbeat interval (CLUSTER_HEARTBEAT_INTERVAL)


class Nodes:
    """A throwaway cluster and its nodes' heartbeats, as the nodes send them."""

    def __init__(self) -> None:
        self.name = f"bench-hb-{uuid.uuid4().hex[:6]}"
        cluster = Cluster.objects.create(name=self.name, replica_count=2, write_quorum=2, heartbeat_interval=INTERVAL_S)
        self.secrets: dict[str, str] = {}
        for index in (1, 2, 3):
            node = f"{self.name}-{index}"
            _, self.secrets[node] = services.register_node(
                name=node, cluster=cluster, archive_location=f"postgresql://127.0.0.1/tec_{node.replace('-', '_')}"
            )
        self.leader, *self.followers = self.secrets
        services.assign_leader(cluster, self.leader, actor=services.Actor("bench"), reason="heartbeat benchmark")
        self.term = Cluster.objects.get(pk=cluster.pk).term
        self.client = Client(HTTP_HOST="127.0.0.1")
        self.seq = 0

    def beat(self, node: str) -> None:
        """One heartbeat of `node`, newer than its last (a report a live node sends)."""
        self.seq += 1
        position = 1_000 + self.seq * 40
        report = {
            "status": "live", "term": self.term, "archived_position": position, "applied_position": position,
            "state_hash": "5eed", "state_hash_position": position, "software_version": "0.1.0",
            "archive_id": f"archive-of-{node}", "last_term": self.term, "fence_seen": self.term, "stalled_for": 0.002,
            "truncations": 0, "settled_quorum": 2 if node == self.leader else -1, "report_boot": "1",
            "report_seq": self.seq, "echo_epoch": 0,
        }  # fmt: skip
        response = self.client.post(
            f"/api/v1/nodes/{node}/heartbeat/", report, content_type="application/json",
            HTTP_AUTHORIZATION=f"Node {self.secrets[node]}",
        )  # fmt: skip
        if response.status_code != 200:
            raise SystemExit(f"bench: heartbeat of {node} answered {response.status_code}: {response.content[:300]!r}")

    def statements(self, node: str) -> int:
        """The SQL statements one heartbeat of `node` makes (not counting BEGIN and COMMIT)."""
        seen: list[str] = []

        def count(execute, sql, params, many, context):
            seen.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            self.beat(node)
        return len(seen)

    def cpu_ms(self, node: str, count: int) -> float:
        """CPU of this process per heartbeat of `node`, over `count` of them."""
        start = time.process_time()
        for _ in range(count):
            self.beat(node)
        return (time.process_time() - start) / count * 1000

    def close(self) -> None:
        Node.objects.filter(cluster__name=self.name).delete()
        Cluster.objects.filter(name=self.name).delete()
        store = redis_lib.Redis.from_url(settings.REDIS_URL)
        for key in store.scan_iter(match=keys(self.name).pattern, count=1000):
            store.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=600, help="heartbeats measured per role (leader, follower)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.count < 1:
        parser.error(f"--count must be 1 or more, got {args.count}")
    fifth = max(1, args.count // 5)
    call_command("migrate", verbosity=0)  # the control plane's tables, on a fresh database
    nodes = Nodes()
    try:
        for _ in range(20):  # warm: connections, caches, the first replication key
            for node in nodes.secrets:
                nodes.beat(node)
        statements = {"leader": nodes.statements(nodes.leader), "follower": nodes.statements(nodes.followers[0])}
        # Alternating fifths, so that a slower minute of the machine falls on both roles.
        leader, follower = [], []
        for _ in range(5):
            leader.append(nodes.cpu_ms(nodes.leader, fifth))
            follower.append(nodes.cpu_ms(nodes.followers[0], fifth))
    finally:
        nodes.close()
    cpu = {"leader": round(statistics.median(leader), 2), "follower": round(statistics.median(follower), 2)}
    # A cluster of one leader and N - 1 followers beating every INTERVAL_S, on one core.
    per_node_ms = (cpu["leader"] + 2 * cpu["follower"]) / 3
    nodes_per_core = int(INTERVAL_S * 1000 / per_node_ms)
    if args.json:
        print(json.dumps({"cpu_ms_per_heartbeat": cpu, "statements_per_heartbeat": statements,
                          "nodes_per_core_at_interval": nodes_per_core, "interval_s": INTERVAL_S}))  # fmt: skip
        return
    print(f"Control plane, one heartbeat (median of five runs of {fifth}):")
    for role in ("leader", "follower"):
        print(f"  {role:8}: {cpu[role]:.2f} ms of CPU, {statements[role]} SQL statements (besides BEGIN and COMMIT)")
    print(f"  one core serves about {nodes_per_core} nodes beating every {INTERVAL_S:g} s "
          f"(three-node clusters: {3 * per_node_ms / INTERVAL_S / 10:.1f}% of a core each)")  # fmt: skip


if __name__ == "__main__":
    main()
