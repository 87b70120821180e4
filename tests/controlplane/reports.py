"""Node rows as their heartbeats would leave them, for tests that need no running node."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from controlplane.clusters.models import Node, NodeStatus


def report(
    name: str,
    position: int = 0,
    *,
    fence_seen: int = 0,
    last_term: int = 1,
    status: str = NodeStatus.LIVE,
    ago: float = 0.0,
    resyncing: bool = False,
) -> None:
    """`name` reported `ago` seconds ago: its log ends at (last_term, position), measured
    after reading fence `fence_seen` (an election in term E counts it when >= E)."""
    Node.objects.filter(name=name).update(
        status=status,
        archived_position=position,
        applied_position=position,
        last_heartbeat=timezone.now() - timedelta(seconds=ago),
        last_term=last_term,
        fence_seen=fence_seen,
        archive_id=f"archive-of-{name}",
        resyncing=resyncing,
    )
