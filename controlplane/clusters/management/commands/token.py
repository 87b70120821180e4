"""`manage.py token`: issue, list and revoke API tokens (hashed, expiring)."""

from __future__ import annotations

import json
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from controlplane.clusters import tokens


class Command(BaseCommand):
    help = (
        "API tokens (Authorization: Token <token>). 'issue USER' prints a new token once "
        "(only its digest is kept) valid for --hours (default API_TOKEN_TTL_HOURS); 'list' "
        "shows key, user, expiry; 'revoke --key KEY' or 'revoke --user USER' deletes them: "
        "the next request with a revoked token gets 401."
    )

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        issue = sub.add_parser("issue", help="issue a token for a user; printed once")
        issue.add_argument("user")
        issue.add_argument("--hours", type=float, help="lifetime in hours (default API_TOKEN_TTL_HOURS)")
        issue.add_argument("--no-expiry", action="store_true", help="a token that never expires")
        listing = sub.add_parser("list", help="the tokens, without their secret part")
        listing.add_argument("--user")
        listing.add_argument("--json", action="store_true")
        revoke = sub.add_parser("revoke", help="delete tokens by key prefix or by user")
        revoke.add_argument("--key", help="the token's key (its first characters, as listed)")
        revoke.add_argument("--user", help="revoke every token of this user")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"_{action}")(**options)

    def _issue(self, *, user: str, hours: float | None, no_expiry: bool, **_) -> None:
        if not get_user_model().objects.filter(username=user).exists():
            raise CommandError(f"no user named {user!r}")
        if hours is not None and hours <= 0:
            raise CommandError("--hours must be positive")
        ttl = None if no_expiry else (timedelta(hours=hours) if hours else tokens.DEFAULT)
        issued = tokens.issue(user, ttl=ttl)
        expiry = issued.expiry.isoformat() if issued.expiry else "never"
        self.stdout.write(f"{issued.token}\n(user {user}, key {issued.key}, expires {expiry}; shown only now)")

    def _list(self, *, user: str | None, json: bool, **_) -> None:
        rows = tokens.listing(user)
        if json:
            self.stdout.write(_dumps(rows))
            return
        for row in rows:
            state = "EXPIRED" if row["expired"] else f"expires {row['expiry'] or 'never'}"
            self.stdout.write(f"{row['key']}  {row['user']:<20} created {row['created']}  {state}")
        if not rows:
            self.stdout.write("no tokens")

    def _revoke(self, *, key: str | None, user: str | None, **_) -> None:
        if not key and not user:
            raise CommandError("say which: --key KEY or --user USER")
        count = tokens.revoke(key=key, username=user)
        self.stdout.write(f"revoked {count} token(s)")


def _dumps(rows) -> str:
    return json.dumps(rows, indent=2)
