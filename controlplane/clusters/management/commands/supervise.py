"""`manage.py supervise`: the supervisor as a loop, for deployments without Celery beat."""

from __future__ import annotations

import time

import redis
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connections

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
            try:
                statuses = supervisor.run_all()
            except (DatabaseError, redis.RedisError) as error:
                # The database or Redis restarting must not end the supervisor (no wedges):
                # say so, drop the broken connections, and try again next cycle.
                self.stderr.write(f"supervisor cycle failed ({type(error).__name__}: {error}); retrying")
                connections.close_all()
                if once:
                    raise SystemExit(1) from None
                time.sleep(interval)
                continue
            for status in statuses:
                cluster = status.split(":", 1)[0]
                if once or last.get(cluster) != status:
                    self.stdout.write(status)
                    self.stdout.flush()
                last[cluster] = status
            if once:
                return
            time.sleep(interval)
