"""API tokens: issued, listed and revoked here, for the admin, the CLI and the demo.

Tokens are django-rest-knox tokens: only a SHA-512 digest is stored (and the first 15
characters, to find the row), every token expires (API_TOKEN_TTL_HOURS unless said
otherwise), and revoking deletes the row, so the next request with it gets 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from knox import crypto
from knox.models import AuthToken
from knox.settings import CONSTANTS

DEFAULT = object()


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown this once; only its digest is kept
    key: str  # the first characters: names the token in lists and to revoke it
    username: str
    expiry: datetime | None


def default_ttl() -> timedelta:
    return timedelta(hours=settings.API_TOKEN_TTL_HOURS)


def issue(username: str, *, ttl: timedelta | object | None = DEFAULT, token: str | None = None) -> IssuedToken:
    """A new token for `username`; ttl None means it never expires (say so on purpose).

    `token` lets the demo keep the same token over runs (kept in run/); it must be long and
    random. Issuing an existing `token` again only renews its expiry."""
    user = get_user_model().objects.get(username=username)
    ttl = default_ttl() if ttl is DEFAULT else ttl
    expiry = timezone.now() + ttl if ttl is not None else None
    if token is None:
        token = crypto.create_token_string()
    digest = crypto.hash_token(token)
    with transaction.atomic():
        AuthToken.objects.update_or_create(
            digest=digest,
            defaults={"user": user, "token_key": token[: CONSTANTS.TOKEN_KEY_LENGTH], "expiry": expiry},
        )
    return IssuedToken(token, token[: CONSTANTS.TOKEN_KEY_LENGTH], username, expiry)


def revoke(*, key: str | None = None, username: str | None = None) -> int:
    """Delete the token(s) whose key starts with `key`, or all of `username`'s; the count."""
    if not key and not username:
        raise ValueError("name a token key or a user")
    tokens = AuthToken.objects.all()
    if key:
        tokens = tokens.filter(token_key__startswith=key)
    if username:
        tokens = tokens.filter(user__username=username)
    count, _ = tokens.delete()
    return count


def listing(username: str | None = None) -> list[dict]:
    tokens = AuthToken.objects.select_related("user").order_by("user__username", "created")
    if username:
        tokens = tokens.filter(user__username=username)
    now = timezone.now()
    return [
        {
            "key": token.token_key,
            "user": token.user.get_username(),
            "created": token.created.isoformat(),
            "expiry": token.expiry.isoformat() if token.expiry else None,
            "expired": token.expiry is not None and token.expiry < now,
        }
        for token in tokens
    ]
