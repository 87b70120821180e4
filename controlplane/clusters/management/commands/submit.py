"""`manage.py submit`: send one command to a cluster from a shell and print its committed events."""

from __future__ import annotations

import json
import os
import time

from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import commands as cluster_commands
from controlplane.clusters.models import Cluster


def parse_value(raw: str):
    if raw.lower() in {"true", "false"}:
        return raw.lower() == "true"
    try:
        return int(raw)
    except ValueError:
        return raw


class Command(BaseCommand):
    help = (
        "Submit one command to a cluster and print its committed events. Examples:\n"
        "  manage.py submit demo place_order symbol=DEMO side=buy qty=10 price=100 account=alice\n"
        "  manage.py submit demo cancel_order symbol=DEMO order_id=3 account=alice\n"
        "  manage.py submit demo --json '{\"type\": \"add_instrument\", \"symbol\": \"XYZ\"}'\n"
        "client_id defaults to cli-$USER and client_seq to the current time in microseconds."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("cluster", help="cluster name")
        parser.add_argument("type", nargs="?", help="command type, e.g. place_order")
        parser.add_argument("fields", nargs="*", help="field=value pairs")
        parser.add_argument("--json", dest="json_body", help="the whole command as JSON")
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")

    def handle(self, *args, cluster: str, type: str | None, fields: list[str], json_body, timeout, **options):
        if not Cluster.objects.filter(name=cluster).exists():
            names = ", ".join(Cluster.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no cluster named {cluster!r} (clusters: {names})")
        if json_body:
            try:
                body = json.loads(json_body)
            except json.JSONDecodeError as error:
                raise CommandError(f"--json is not valid JSON: {error}") from None
        elif type:
            body = {"type": type}
            for pair in fields:
                key, sep, value = pair.partition("=")
                if not sep:
                    raise CommandError(f"{pair!r} is not field=value")
                body[key] = parse_value(value)
        else:
            raise CommandError("give a command type and field=value pairs, or --json")
        if isinstance(body, dict):
            body.setdefault("client_id", f"cli-{os.environ.get('USER', 'operator')}")
            body.setdefault("client_seq", time.time_ns() // 1000)
        commands, errors = cluster_commands.parse_commands([body])
        if errors:
            problems = "; ".join(f"{field}: {message}" for field, message in errors["0"].items())
            raise CommandError(f"invalid command: {problems}")
        try:
            submission = cluster_commands.submit(cluster, commands, timeout)
        except cluster_commands.CommitTimeout as error:
            raise CommandError(str(error)) from None
        for result in submission.as_json():
            self.stdout.write(f"{result['status']} at position {result['first_position']}:")
            for event in result["events"]:
                self.stdout.write("  " + json.dumps(event))
