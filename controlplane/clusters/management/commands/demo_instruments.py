"""`manage.py demo_instruments`: list the demo instruments once the cluster commits commands."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import commands as cluster_commands
from nodes.engine import AddInstrument

# A fixed client id and sequence numbers: running this again is answered from the log
# as a duplicate (the engine's idempotency), so the instruments are listed exactly once.
DEMO_INSTRUMENTS = [
    ("DEMO", 1, 1, None, None),
    ("ACME", 5, 10, 1_000, 100_000),
    ("GLOBEX", 1, 100, None, None),
]


class Command(BaseCommand):
    help = "Add the demo instruments to a cluster (idempotent), waiting for it to commit."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--cluster", default="demo")
        parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the cluster")

    def handle(self, *args, cluster: str, wait: float, **options) -> None:
        commands = [
            AddInstrument(client_id="demo-setup", client_seq=index, symbol=symbol, tick_size=tick,
                          lot_size=lot, band_low=low, band_high=high)
            for index, (symbol, tick, lot, low, high) in enumerate(DEMO_INSTRUMENTS, start=1)
        ]  # fmt: skip
        deadline = time.monotonic() + wait
        while True:
            try:
                submission = cluster_commands.submit(cluster, commands, timeout=5.0)
                break
            except cluster_commands.CommitTimeout as error:
                if time.monotonic() > deadline:
                    raise CommandError(f"the demo cluster did not commit in {wait:.0f} s: {error}") from None
                self.stdout.write(f"waiting for cluster {cluster}: {error}")
        symbols = ", ".join(symbol for symbol, *_ in DEMO_INSTRUMENTS)
        self.stdout.write(self.style.SUCCESS(f"Demo instruments listed on {cluster}: {symbols}"))
        for result in submission.as_json():
            self.stdout.write(f"  {result['status']} at position {result['first_position']}")
        self.stdout.write(
            "Try:  .venv/bin/python manage.py submit demo place_order symbol=DEMO side=buy "
            "qty=10 price=100 account=alice\n"
            "Admin: http://127.0.0.1:8000/admin/   API: http://127.0.0.1:8000/api/docs/"
        )
