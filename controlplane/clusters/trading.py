"""Trading permissions: who may trade for which account, checked before a command is logged.

The API checks a user's own grant here before sending; the leader checks signed batches
from Redis with wire.admission, from the policy this module puts in its heartbeat answer,
which also hands it the batch-nonce marks of earlier leaders (wire.nonces).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from controlplane.clusters.models import ClientKey, ClientNonce, Cluster, TradingClient
from wire.admission import Grant

CONTROLPLANE_KEY_ID = "controlplane"


def controlplane_key() -> tuple[str, bytes]:
    """The control plane's own signing key, derived from SECRET_KEY (rotated with it)."""
    secret = hmac.new(settings.SECRET_KEY.encode(), b"tec-controlplane-batch-key", hashlib.sha256).digest()
    return CONTROLPLANE_KEY_ID, secret


def grant_of(client: TradingClient) -> Grant:
    return Grant(
        client=client.name,
        accounts=frozenset(client.accounts.values_list("name", flat=True)),
        instruments=client.may_manage_instruments,
    )


def leader_policy(cluster: Cluster) -> dict | None:
    """The `trading` part of the leader's heartbeat answer: None when not enforced."""
    if not cluster.trading_checks:
        return None
    key_id, secret = controlplane_key()
    keys = {key_id: {"client": CONTROLPLANE_KEY_ID, "secret": secret.hex(), "trusted": True}}
    live_keys = ClientKey.objects.filter(revoked_at__isnull=True, client__active=True).select_related("client")
    grants: dict[int, Grant] = {}
    for key in live_keys:
        grant = grants.get(key.client_id) or grants.setdefault(key.client_id, grant_of(key.client))
        keys[key.key_id] = {
            "client": grant.client,
            "secret": key.secret,
            "accounts": sorted(grant.accounts),
            "instruments": grant.instruments,
        }
    marks = ClientNonce.objects.filter(cluster=cluster, key_id__in=list(keys)).values_list("key_id", "nonce")
    return {"enforced": True, "keys": keys, "nonces": dict(marks)}


def raise_nonce_marks(cluster_id: int, marks: dict[str, int]) -> None:
    """Keep, per (cluster, key id), the highest nonce a leader reported acknowledging;
    never lower it. One upsert: a deposed leader's late report and its successor's may
    race on the same rows, and keeping the greater makes their order irrelevant. Rows in
    key order, so two such upserts lock them in the same order and never deadlock."""
    if not marks:
        return
    table = ClientNonce._meta.db_table
    rows = sorted(marks.items())
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    params = [value for key_id, nonce in rows for value in (cluster_id, key_id, nonce)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (cluster_id, key_id, nonce) VALUES {values} "  # our table name, values as parameters
            f"ON CONFLICT (cluster_id, key_id) DO UPDATE SET nonce = EXCLUDED.nonce "
            f"WHERE {table}.nonce < EXCLUDED.nonce",
            params,
        )


def new_key(client: TradingClient | str) -> ClientKey:
    """A new key for the client; its secret is shown to the operator once (admin, CLI)."""
    with transaction.atomic():
        client = client if isinstance(client, TradingClient) else TradingClient.objects.get(name=client)
        return ClientKey.objects.create(
            client=client, key_id=f"{client.name[:20]}-{secrets.token_hex(4)}", secret=secrets.token_hex(32)
        )


def revoke_key(key_id: str) -> int:
    """Revoke a key: the leader refuses its batches from its next heartbeat answer on."""
    return ClientKey.objects.filter(key_id=key_id, revoked_at__isnull=True).update(revoked_at=timezone.now())


class NotATradingClient(Exception):
    pass


def api_refusals(cluster: Cluster, user, commands: list) -> dict[str, str]:
    """Per command index, why the user may not submit it to `cluster`; {} when all may go.

    Raises NotATradingClient when the cluster enforces permissions and the user is none."""
    if not cluster.trading_checks:
        return {}
    client = TradingClient.objects.filter(user=user, active=True).first()
    if client is None:
        raise NotATradingClient(
            f"user {user.get_username()} is not an active trading client: an operator registers "
            "one (admin: Trading clients) and grants it accounts"
        )
    grant = grant_of(client)
    refusals = {}
    for index, command in enumerate(commands):
        reason = grant.refusal(command)
        if reason:
            refusals[str(index)] = reason
    return refusals
