"""`manage.py write_quorum`: show or change a cluster's write quorum (W)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import services
from controlplane.clusters.models import Cluster


class Command(BaseCommand):
    help = (
        "Set the write quorum W of CLUSTER: how many followers must archive an event before "
        "its result is reported committed, 0 to the replica count N (default majority "
        "ceil(N/2)). Lowering always works; raising above the live followers is refused. "
        "Without W, prints the current N, W and what they tolerate."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("cluster")
        parser.add_argument("write_quorum", nargs="?", type=int, metavar="W", help="the new write quorum")

    def handle(self, *args, cluster: str, write_quorum: int | None, **options) -> None:
        cluster_obj = Cluster.objects.filter(name=cluster).first()
        if cluster_obj is None:
            names = ", ".join(Cluster.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no cluster named {cluster!r} (clusters: {names})")
        if write_quorum is not None:
            try:
                cluster_obj = services.set_write_quorum(
                    cluster_obj, write_quorum, actor=services.Actor("manage.py write_quorum")
                )
            except services.ServiceError as error:
                raise CommandError(f"write quorum not changed: {error}") from None
        self.stdout.write(
            f"{cluster}: {cluster_obj.replica_count} replica(s), write quorum "
            f"{cluster_obj.write_quorum}: {cluster_obj.tolerance}"
        )
