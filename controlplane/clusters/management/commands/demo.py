"""Create the demo: an admin, a viewer and an operator with tokens, and a three-node cluster."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from controlplane.clusters import services, tokens
from controlplane.clusters.models import Cluster, Node
from nodes.protocol.quorum import default_write_quorum

RUN_DIR = Path(settings.BASE_DIR) / "run"


def archive_location_for(node_name: str) -> str:
    """The demo keeps every node's archive on the local server, one database per node."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    base = settings.DATABASE_URL
    info = conninfo_to_dict(base)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    dbname = "tec_archive_" + node_name.replace("-", "_")
    make_conninfo(base, dbname=dbname)  # validates the URL
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def remembered_secret(name: str, *, hex_bytes: int = 0) -> tuple[str, bool]:
    """A secret kept in run/<name>, made on first use so every `make run` prints the same."""
    RUN_DIR.mkdir(exist_ok=True)
    path = RUN_DIR / name
    if path.exists():
        return path.read_text().strip(), False
    value = secrets.token_hex(hex_bytes) if hex_bytes else secrets.token_urlsafe(18)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value, True


class Command(BaseCommand):
    help = (
        "Create the demo users (admin, viewer, operator), their API tokens, and the demo "
        "cluster with three registered nodes (2 replicas, write quorum 1). Idempotent; "
        "prints the logins."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--cluster", default="demo", help="demo cluster name (default: demo)")
        parser.add_argument("--nodes", type=int, default=3, help="number of nodes (default: 3)")
        parser.add_argument(
            "--replica-count",
            type=int,
            default=2,
            help="replicas N: followers that hold a copy (default 2)",
        )
        parser.add_argument(
            "--write-quorum",
            type=int,
            help="write quorum W: follower acks a commit needs, 0 to N (default: the majority ceil(N/2))",
        )

    @transaction.atomic
    def handle(
        self, *args, cluster: str, nodes: int, replica_count: int, write_quorum: int | None, **options
    ) -> None:
        if nodes < 1 or not 0 <= replica_count < nodes:
            raise CommandError(
                f"--nodes must be at least 1 and --replica-count (N) between 0 and nodes - 1 "
                f"(got {nodes} nodes, N = {replica_count})"
            )
        if write_quorum is None:
            write_quorum = default_write_quorum(replica_count)
        if not 0 <= write_quorum <= replica_count:
            raise CommandError(
                f"--write-quorum (W) must be between 0 and --replica-count (N = {replica_count}) "
                f"(got W = {write_quorum})"
            )
        users = self.ensure_users()
        created = self.ensure_cluster(cluster, nodes, replica_count, write_quorum)
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        admin_password = users["admin"][0]
        self.stdout.write(f"  Admin:  http://127.0.0.1:8000/admin/  user admin  password {admin_password}")
        for name in ("viewer", "operator"):
            self.stdout.write(f"  API token ({name}): {users[name][1]}")
        self.stdout.write(
            f"  Cluster {cluster}: {', '.join(created)} (node secrets in run/node-*.secret)"
        )
        cluster_obj = Cluster.objects.get(name=cluster)
        self.stdout.write(
            f"  {cluster_obj.replica_count} replica(s), write quorum {cluster_obj.write_quorum}: "
            f"{cluster_obj.tolerance}"
        )

    def ensure_users(self) -> dict[str, tuple[str, str]]:
        user_model = get_user_model()
        operators = Group.objects.get(name="operators")
        result = {}
        for name in ("admin", "viewer", "operator"):
            password, _ = remembered_secret(f"{name}.password")
            user, _ = user_model.objects.get_or_create(username=name)
            user.is_staff = name != "viewer"
            user.is_superuser = name == "admin"
            user.set_password(password)
            user.save()
            if name == "operator":
                user.groups.add(operators)
            # Kept in run/ so every run prints the same; only its digest is in the database,
            # renewed for another API_TOKEN_TTL_HOURS on each run.
            token = tokens.issue(name, token=remembered_secret(f"{name}.token", hex_bytes=32)[0]).token
            result[name] = (password, token)
        return result

    def ensure_cluster(self, name: str, node_count: int, replica_count: int, write_quorum: int) -> list[str]:
        cluster, _ = Cluster.objects.get_or_create(
            name=name,
            defaults={
                "replica_count": replica_count,
                "write_quorum": write_quorum,
                "term_write_quorum": write_quorum,
                "heartbeat_interval": settings.CLUSTER_HEARTBEAT_INTERVAL,
                "failover_timeout": settings.CLUSTER_FAILOVER_TIMEOUT,
            },
        )
        names = []
        for index in range(1, node_count + 1):
            node_name = f"{name}-node-{index}"
            names.append(node_name)
            secret, _ = remembered_secret(f"node-{node_name}.secret")
            node = Node.objects.filter(name=node_name).first()
            if node is None:
                services.register_node(
                    name=node_name,
                    cluster=cluster,
                    archive_location=archive_location_for(node_name),
                    secret=secret,
                )
            else:
                node.credentials_hash = services.hash_node_secret(secret)
                node.save(update_fields=["credentials_hash"])
        if cluster.leader_id is None:
            services.assign_leader(
                cluster, names[0], actor=services.Actor("demo"), reason="initial leader of the demo"
            )
        return names
