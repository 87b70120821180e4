"""`manage.py switchover`: planned handover of leadership to a chosen follower."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import dashboard, services, switchover
from controlplane.clusters.models import Cluster


class Command(BaseCommand):
    help = (
        "Hand the leadership of CLUSTER to FOLLOWER: the leader stops taking commands, the "
        "follower catches up to its last position, then the term is bumped and the roles "
        "swap. Give the leader and term you expect, as shown by --list."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("cluster")
        parser.add_argument("follower", nargs="?")
        parser.add_argument("--expected-leader", help="the leader you expect now")
        parser.add_argument("--expected-term", type=int, help="the term you expect now")
        parser.add_argument("--reason", default="planned switchover from the command line")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to catch up")
        parser.add_argument("--list", action="store_true", help="show the candidates and exit")

    def handle(self, *args, cluster: str, follower: str | None, **options) -> None:
        try:
            cluster_obj = Cluster.objects.select_related("leader").get(name=cluster)
        except Cluster.DoesNotExist:
            raise CommandError(f"no cluster named {cluster!r}") from None
        if options["list"] or not follower:
            leader = cluster_obj.leader.name if cluster_obj.leader else "none"
            self.stdout.write(
                f"{cluster}: term {cluster_obj.term}, leader {leader}; {cluster_obj.replica_count} "
                f"replica(s), write quorum {cluster_obj.write_quorum} ({cluster_obj.tolerance})"
            )
            why = dashboard.why_no_leader(cluster_obj)
            if why:
                self.stdout.write(f"  why no leader: {why}")
            for candidate in switchover.candidates(cluster_obj):
                mark = "eligible" if candidate.eligible else "not eligible"
                self.stdout.write(f"  {candidate.node}: {mark} ({candidate.why})")
            if not follower:
                return
        if options["expected_leader"] is None or options["expected_term"] is None:
            raise CommandError(
                "give --expected-leader and --expected-term (see --list): a switchover "
                "refuses to act on a stale view of the cluster"
            )
        try:
            change = switchover.change_leader(
                cluster,
                follower,
                actor=services.Actor("manage.py switchover"),
                reason=options["reason"],
                expected_term=options["expected_term"],
                expected_leader=options["expected_leader"],
                timeout=options["timeout"],
            )
        except services.ServiceError as error:
            hint = ""
            if "force" in str(error):
                hint = f" From a shell: manage.py force_leader {cluster} {follower} --reason TEXT"
            raise CommandError(f"switchover refused: {error}{hint}") from None
        self.stdout.write(
            self.style.SUCCESS(f"{change.new_leader} is the leader of {cluster} in term {change.term}")
        )
