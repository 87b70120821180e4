"""`manage.py supervise`: the supervisor as a loop, for deployments without Celery beat."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from controlplane.clusters import supervisor


class Command(BaseCommand):
    help = (
        "Watch every cluster: mark nodes with an old heartbeat offline, elect a new leader "
        "when the leader is silent past the failover timeout, restore lost fences. Safe to "
        "run twice at once (row locks)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between cycles")
        parser.add_argument("--once", action="store_true", help="run one cycle and exit")

    def handle(self, *args, interval: float, once: bool, **options) -> None:
        last: dict[str, str] = {}
        while True:
            close_old_connections()
            for status in supervisor.run_all():
                cluster = status.split(":", 1)[0]
                if once or last.get(cluster) != status:
                    self.stdout.write(status)
                    self.stdout.flush()
                last[cluster] = status
            if once:
                return
            time.sleep(interval)
