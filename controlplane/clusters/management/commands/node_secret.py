"""`manage.py node_secret rotate NODE`: a new node secret without downtime."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import maintenance, services
from controlplane.clusters.models import Node


class Command(BaseCommand):
    help = (
        "Rotate a node's secret without downtime: prints the new secret (or writes it to --write, "
        "the node's NODE_SECRET_FILE, mode 600). The old secret works until the node's first "
        "heartbeat with the new one; a node re-reads its secret file every heartbeat. Audited."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["rotate"])
        parser.add_argument("node")
        parser.add_argument("--write", metavar="FILE", help="write the new secret to FILE instead of printing it")

    def handle(self, *args, action: str, node: str, write: str | None, **options) -> None:
        if not Node.objects.filter(name=node).exists():
            raise CommandError(f"no node named {node!r}")
        secret = maintenance.rotate_node_secret(node, actor=services.Actor("manage.py node_secret"))
        if write:
            path = Path(write)
            temporary = path.with_name(path.name + ".new")
            temporary.write_text(secret + "\n")
            os.chmod(temporary, 0o600)
            temporary.replace(path)  # atomic: the node never reads half a secret
            self.stdout.write(f"new secret of {node} written to {path}")
        else:
            self.stdout.write(f"{secret}\n(new secret of {node}; the old one works until the node uses this one)")
