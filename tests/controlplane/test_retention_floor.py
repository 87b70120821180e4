"""The heartbeat answer tells every node what retention must keep: the lowest live member's position."""

from __future__ import annotations

from controlplane.clusters import services
from controlplane.clusters.models import Node
from tests.controlplane.test_node_heartbeat import REPORT, beat


def test_the_floor_is_the_lowest_position_of_a_live_member(cluster, settings):
    secrets = {}
    for name in ("alpha-1", "alpha-2", "alpha-3"):
        secrets[name] = services.new_node_secret()
        Node.objects.filter(name=name).update(credentials_hash=services.hash_node_secret(secrets[name]))
    cluster.archive_keep_events = 1234
    cluster.save(update_fields=["archive_keep_events"])

    beat("alpha-1", secrets["alpha-1"], {**REPORT, "archived_position": 900, "archive_id": "a1"})
    beat("alpha-2", secrets["alpha-2"], {**REPORT, "archived_position": 640, "archive_id": "a2"})
    # alpha-3 never reported (down): it does not hold the others' retention back.
    answer = beat("alpha-1", secrets["alpha-1"], {**REPORT, "archived_position": 950, "archive_id": "a1",
                                                  "archive_first_position": 300, "archive_bytes": 4096,
                                                  "snapshot_position": 800}).json()  # fmt: skip
    assert answer["retention_floor"] == 640
    assert answer["keep_events"] == 1234

    # A node still starting (replaying, installing) claims nothing and is not live: not counted.
    beat("alpha-2", secrets["alpha-2"], {**REPORT, "status": "starting", "archive_id": "", "archived_position": 0})
    assert beat("alpha-1", secrets["alpha-1"], {**REPORT, "archived_position": 960, "archive_id": "a1"}).json()[
        "retention_floor"
    ] == 960

    # Removed members never count.
    beat("alpha-3", secrets["alpha-3"], {**REPORT, "archived_position": 10, "archive_id": "a3"})
    assert beat("alpha-1", secrets["alpha-1"], {**REPORT, "archived_position": 960, "archive_id": "a1"}).json()[
        "retention_floor"
    ] == 10
    services.remove_node("alpha-3", actor=services.Actor("test"))
    assert beat("alpha-1", secrets["alpha-1"], {**REPORT, "archived_position": 960, "archive_id": "a1"}).json()[
        "retention_floor"
    ] == 960


def test_the_archive_size_is_stored_from_the_report(cluster):
    secret = services.new_node_secret()
    Node.objects.filter(name="alpha-2").update(credentials_hash=services.hash_node_secret(secret))
    beat("alpha-2", secret, {**REPORT, "archived_position": 950, "archive_id": "a2",
                             "archive_first_position": 301, "archive_bytes": 4096, "snapshot_position": 800})  # fmt: skip
    node = Node.objects.get(name="alpha-2")
    assert (node.archive_first_position, node.archive_bytes, node.snapshot_position) == (301, 4096, 800)
    from controlplane.clusters.dashboard import archive_events

    assert archive_events(node) == 650
