"""`manage.py replication_key`: list and rotate the keys a cluster's nodes sign acks and entries with."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import replication, services
from controlplane.clusters.models import Cluster, ReplicationKey


class Command(BaseCommand):
    help = (
        "Replication keys (HMAC-SHA256 over every ack and live-stream entry). 'list CLUSTER' shows "
        "them (never their secrets); 'rotate CLUSTER' adds a key that signs once every node has had "
        "it for a failover timeout and retires the keys before the one signing now (no restart, "
        "nothing genuine refused); 'rotate CLUSTER --now' (a leaked key) signs with the new key at "
        "once and retires every other. Audited."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["list", "rotate"])
        parser.add_argument("cluster")
        parser.add_argument("--now", action="store_true", help="rotate: sign with the new key at once")

    def handle(self, *args, action: str, cluster: str, now: bool, **options) -> None:
        if not Cluster.objects.filter(name=cluster).exists():
            raise CommandError(f"no cluster named {cluster!r}")
        if action == "rotate":
            key = replication.rotate(cluster, actor=services.Actor("manage.py replication_key"), now=now)
            self.stdout.write(f"new replication key {key.key_id} for {cluster}" + (" (signing now)" if now else ""))
            return
        for key in ReplicationKey.objects.filter(cluster__name=cluster):
            state = f"retired {key.retired_at.isoformat()}" if key.retired_at else "live"
            self.stdout.write(f"{key.key_id}  created {key.created_at.isoformat()}  {state}")
