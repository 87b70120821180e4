"""Response bodies as serializers, for the OpenAPI document only: typed, not bare objects.

The views build these bodies from the engine's and the services' plain values; these
classes describe them (drf-spectacular reads them), so clients can generate types.
"""

from __future__ import annotations

from rest_framework import serializers

from controlplane.clusters.models import NodeRole


class DetailSerializer(serializers.Serializer):
    """An error without a code: 404, 503, 504."""

    detail = serializers.CharField()


class ForceLeaderErrorsSerializer(serializers.Serializer):
    """400 from force-leader: what is wrong per field; without "confirm": true, the warning."""

    node = serializers.ListField(child=serializers.CharField(), required=False)
    reason = serializers.ListField(child=serializers.CharField(), required=False)
    confirm = serializers.ListField(child=serializers.CharField(), required=False)


class LevelField(serializers.ListField):
    """One price level: [price, quantity, number of orders]."""

    child = serializers.IntegerField()


class BookSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    status = serializers.CharField(help_text="The instrument's trading status.")
    position = serializers.IntegerField(help_text="The log position the leader's book is at.")
    bids = serializers.ListField(child=LevelField(min_length=3, max_length=3), help_text="Best first.")
    asks = serializers.ListField(child=LevelField(min_length=3, max_length=3), help_text="Best first.")


class OrderStatusSerializer(serializers.Serializer):
    order_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["open", "partially_filled", "closed"])
    symbol = serializers.CharField(required=False, help_text="Resting orders only.")
    account = serializers.CharField(required=False)
    side = serializers.ChoiceField(choices=["buy", "sell"], required=False)
    price = serializers.IntegerField(required=False)
    open_qty = serializers.IntegerField(required=False)
    filled_qty = serializers.IntegerField(required=False)
    tif = serializers.CharField(required=False)
    post_only = serializers.BooleanField(required=False)


class EventsSerializer(serializers.Serializer):
    events = serializers.ListField(child=serializers.DictField(), help_text="Oldest first; each has a `type`.")


class CommandResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["committed", "duplicate", "error"])
    first_position = serializers.IntegerField(help_text="Log position of the command's first event.")
    events = serializers.ListField(child=serializers.DictField(), help_text="The committed events, each with a `type`.")


class CommandResultsSerializer(serializers.Serializer):
    results = CommandResultSerializer(many=True, help_text="In the order the commands were sent.")


class CommandErrorsSerializer(serializers.Serializer):
    commands = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField()),
        help_text="Per command index, per field, what is wrong. Nothing was sent.",
    )


class NodeConfigSerializer(serializers.Serializer):
    """The answer to a heartbeat: everything a node needs to take its role."""

    node = serializers.CharField()
    cluster = serializers.CharField()
    role = serializers.ChoiceField(choices=NodeRole.choices)
    term = serializers.IntegerField()
    leader = serializers.CharField(allow_null=True)
    replica_count = serializers.IntegerField()
    write_quorum = serializers.IntegerField()
    heartbeat_interval = serializers.FloatField()
    failover_timeout = serializers.FloatField()
    lease = serializers.FloatField()
    archive_location = serializers.CharField()
    archive_id = serializers.CharField()
    resyncing = serializers.BooleanField()
    switchover_to = serializers.CharField(allow_null=True)
    members = serializers.ListField(child=serializers.CharField(), help_text="For the leader: the followers whose acks count.")
    keep_events = serializers.IntegerField(help_text="Retention's minimum window: the newest events the archive keeps.")
    retention_floor = serializers.IntegerField(
        allow_null=True, help_text="The lowest position a live member holds: retention keeps every event after it."
    )
    replication = serializers.DictField(
        help_text="The cluster's replication keys: 'keys' (key id -> secret, hex) verify acks and "
        "live-stream entries, 'signing' names the one to sign with."
    )
