"""`manage.py create_archive`: create a node's archive database and tables (idempotent)."""

from __future__ import annotations

import psycopg
from django.core.management.base import BaseCommand, CommandError

from archive import create_archive
from controlplane.clusters.models import Node


class Command(BaseCommand):
    help = (
        "Create the archive (PostgreSQL database and tables) of the named nodes, or of every "
        "registered node with --all. Safe to run again; nodes also do it when they start."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("nodes", nargs="*", help="node names")
        parser.add_argument("--all", action="store_true", help="every registered node")

    def handle(self, *args, nodes: list[str], all: bool, **options) -> None:
        queryset = Node.objects.all() if all else Node.objects.filter(name__in=nodes)
        found = {node.name: node for node in queryset}
        missing = sorted(set(nodes) - set(found))
        if missing:
            raise CommandError(f"no registered node named {', '.join(missing)}")
        if not found:
            raise CommandError("name one or more nodes, or give --all")
        for name, node in sorted(found.items()):
            try:
                created = create_archive(node.archive_location)
            except (psycopg.Error, ValueError) as error:
                raise CommandError(f"{name}: cannot create {node.archive_location}: {error}") from None
            state = "created" if created else "already there"
            self.stdout.write(f"{name}: archive {node.archive_location} {state}")
