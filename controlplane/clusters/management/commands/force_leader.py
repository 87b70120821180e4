"""`manage.py force_leader`: an operator's unsafe election, audited (Kafka's unclean.leader.election)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import dashboard, services
from controlplane.clusters.models import Cluster


class Command(BaseCommand):
    help = (
        "Make NODE the leader of CLUSTER whatever the election rules say, for when the cluster "
        "cannot elect safely and trading must resume. Results already reported as committed "
        "may be lost: without --yes this prints what, per node, and changes nothing. The role "
        "change is audited with the reason and what may be lost."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("cluster")
        parser.add_argument("node", help="a live node of the cluster")
        parser.add_argument("--reason", required=True, help="why; recorded in the audit")
        parser.add_argument(
            "--yes", action="store_true", help="accept that committed results may be lost, and do it"
        )

    def handle(self, *args, cluster: str, node: str, reason: str, yes: bool, **options) -> None:
        cluster_obj = Cluster.objects.select_related("leader").filter(name=cluster).first()
        if cluster_obj is None:
            names = ", ".join(Cluster.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no cluster named {cluster!r} (clusters: {names})")
        if not reason.strip():
            raise CommandError("give a --reason: it is recorded in the audit")
        if not yes:
            self._print_outlook(cluster_obj, node)
            raise CommandError(
                f"not done: forcing {node} skips the election's safety rules and may lose results "
                "already reported as committed (see above). Run again with --yes to accept that."
            )
        try:
            change = services.force_leader(
                cluster, node, actor=services.Actor("manage.py force_leader"), reason=reason
            )
        except services.ServiceError as error:
            raise CommandError(f"force refused: {error}") from None
        self.stdout.write(
            self.style.WARNING(f"{change.new_leader} leads {cluster} in term {change.term} (forced).")
        )
        self.stdout.write(f"Audited as: {change.reason}")

    def _print_outlook(self, cluster: Cluster, node: str) -> None:
        situation, options = dashboard.election_outlook(cluster)
        self.stdout.write(f"{cluster.name}: {situation}")
        chosen = next((option for option in options if option.node == node), None)
        if chosen is None:
            self.stdout.write(f"  {node} is not a node of {cluster.name} (or it was removed)")
        elif chosen.refusal:
            self.stdout.write(f"  {node} cannot be forced: {chosen.refusal}")
        else:
            lost = chosen.at_risk or "nothing another node reported"
            self.stdout.write(
                f"  forcing {node} (term {chosen.last_term}, position {chosen.position}) may lose: {lost}"
            )
        for option in options:
            if option.node != node:
                state = "new empty replica" if option.resyncing else option.status
                self.stdout.write(
                    f"  {option.node}: {state}, term {option.last_term}, position {option.position}"
                )
