"""`manage.py client_key`: issue, list and revoke the signing keys of trading clients."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import trading
from controlplane.clusters.models import ClientKey, TradingClient


class Command(BaseCommand):
    help = (
        "Signing keys of trading clients (HMAC-SHA256 over each command batch sent over Redis). "
        "'issue CLIENT' prints a key id and its secret once; 'list' shows the keys; 'revoke KEY_ID' "
        "makes the leader refuse its batches from its next heartbeat on. Rotate: issue, move the "
        "client to the new key, revoke the old one."
    )

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("issue", help="a new key for a client").add_argument("client")
        sub.add_parser("list", help="the keys (never their secrets)").add_argument("--client")
        sub.add_parser("revoke", help="revoke a key").add_argument("key_id")

    def handle(self, *args, action: str, **options) -> None:
        if action == "issue":
            if not TradingClient.objects.filter(name=options["client"]).exists():
                raise CommandError(f"no trading client named {options['client']!r}")
            key = trading.new_key(options["client"])
            self.stdout.write(f"key id {key.key_id}\nsecret {key.secret}\n(shown only now)")
        elif action == "list":
            keys = ClientKey.objects.select_related("client")
            if options.get("client"):
                keys = keys.filter(client__name=options["client"])
            for key in keys:
                state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "live"
                self.stdout.write(f"{key.key_id}  {key.client.name:<20} {state}")
        else:
            if not trading.revoke_key(options["key_id"]):
                raise CommandError(f"no live key {options['key_id']!r}")
            self.stdout.write(f"revoked {options['key_id']}")
