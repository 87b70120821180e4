"""Replication keys: the HMAC keys a cluster's nodes sign acks and live-stream entries with.

Every node gets the cluster's live keys in its heartbeat answer (`replication`): `keys`
verify, `signing` names the one to sign with. A new key signs only once it has been in
every answer for a failover timeout (the database's clock), so each node verifies with it
before anyone signs with it: rotation needs no restart and refuses nothing genuine. A
rotation retires the keys older than the one signing then, so a key lives two rotations.
`--now` (a leaked key) signs with the new key at once and retires every other: nodes
that have not beaten since refuse the others' acks and entries for a heartbeat (counted,
set aside; a follower catches up from the leader's archive).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.db import transaction

from controlplane.clusters import services
from controlplane.clusters.maintenance import audit
from controlplane.clusters.models import Cluster, OperatorActionKind, ReplicationKey


def _new(cluster: Cluster, created_at) -> ReplicationKey:
    return ReplicationKey.objects.create(
        cluster=cluster, key_id=f"r-{secrets.token_hex(6)}", secret=secrets.token_hex(32), created_at=created_at
    )


def _signing(cluster: Cluster, keys: list[ReplicationKey], now) -> ReplicationKey:
    settled = [key for key in keys if key.created_at <= now - timedelta(seconds=cluster.failover_timeout)]
    return settled[-1] if settled else keys[0]


def _live(cluster: Cluster) -> list[ReplicationKey]:
    return list(ReplicationKey.objects.filter(cluster=cluster, retired_at__isnull=True).order_by("created_at", "pk"))


def node_keys(cluster: Cluster, now) -> dict:
    """The `replication` part of a heartbeat answer; the cluster's first key is made here."""
    keys = _live(cluster)
    if not keys:
        with transaction.atomic():
            # Under the cluster's row lock: two heartbeats at once make one key, not two.
            Cluster.objects.select_for_update().filter(pk=cluster.pk).first()
            keys = _live(cluster) or [_new(cluster, now)]
    return {"signing": _signing(cluster, keys, now).key_id, "keys": {key.key_id: key.secret for key in keys}}


def rotate(cluster_name: str, *, actor: services.Actor, now: bool = False) -> ReplicationKey:
    """A new replication key for the cluster (see the module's docstring). Audited."""
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(name=cluster_name)
        at = services.db_now()
        keys = _live(cluster)
        if now:
            retire = keys
            # Dated a failover timeout back: it signs from the next heartbeat answer on.
            created = at - timedelta(seconds=cluster.failover_timeout)
        else:
            signing = _signing(cluster, keys, at) if keys else None
            retire = [key for key in keys if signing is not None and key.created_at < signing.created_at]
            created = at
        ReplicationKey.objects.filter(pk__in=[key.pk for key in retire]).update(retired_at=at)
        key = _new(cluster, created)
        detail = f"new replication key {key.key_id}; retired {', '.join(k.key_id for k in retire) or 'none'}"
        if now:
            detail += "; signing with it at once"
        audit(cluster, OperatorActionKind.ROTATE_REPLICATION_KEY, actor=actor, detail=detail)
    return key
