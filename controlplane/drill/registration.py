"""Registers the drill's cluster in the private control-plane database (run in `manage.py shell`).

The drill's own process runs under the default settings, whose database is not the
drill's; so this step runs in a child `manage.py shell -c` started with the private
DATABASE_URL and REDIS_URL, through the same service functions the admin and the API
use (register_node, assign_leader). It writes the node secrets and an operator's API
token (for switchovers and write-quorum changes) to a file only the drill reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def register(spec_path: str) -> None:
    """Create the cluster, its nodes, the first leader and an operator token from the spec."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import transaction

    from controlplane.clusters import services, tokens
    from controlplane.clusters.models import Cluster

    spec = json.loads(Path(spec_path).read_text())
    secrets: dict[str, str] = {}
    # One transaction: a supervisor running meanwhile never sees a leaderless term 0.
    with transaction.atomic():
        cluster = Cluster.objects.create(
            name=spec["cluster"],
            replica_count=spec["replicas"],
            write_quorum=spec["write_quorum"],
            term_write_quorum=spec["write_quorum"],
            heartbeat_interval=spec["heartbeat_interval"],
            failover_timeout=spec["failover_timeout"],
            lease=spec["lease"],
        )
        for name, location in spec["archives"].items():
            _, secrets[name] = services.register_node(name=name, cluster=cluster, archive_location=location)
        services.assign_leader(
            cluster, next(iter(spec["archives"])), actor=services.Actor("drill"), reason="the drill's first leader"
        )
        operator, _ = get_user_model().objects.get_or_create(username="drill-operator")
        operator.groups.add(Group.objects.get(name="operators"))
        token = tokens.issue(operator.username).token
    out = Path(spec["out"])
    out.write_text(json.dumps({"secrets": secrets, "token": token}))
    os.chmod(out, 0o600)
