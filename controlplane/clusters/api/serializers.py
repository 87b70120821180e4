"""API serializers. Unknown fields are refused (400) rather than silently ignored."""

from __future__ import annotations

from rest_framework import serializers

from controlplane.clusters.models import NODE_REPORTED_FIELDS, Cluster, Node, RoleChange
from controlplane.clusters.switchover import replica_count_refusal


class StrictFieldsMixin:
    """Reject request fields the serializer does not know, naming each one."""

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data.keys()) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown or read-only field."] for name in unknown}
                )
        return super().to_internal_value(data)


class ClusterSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    leader = serializers.SlugRelatedField(slug_field="name", read_only=True)
    nodes = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Cluster
        fields = [
            "name",
            "replica_count",
            "term",
            "leader",
            "status",
            "heartbeat_interval",
            "failover_timeout",
            "lease",
            "nodes",
            "created_at",
        ]
        read_only_fields = ["term", "leader", "status", "nodes", "created_at"]

    def validate(self, attrs):
        interval = attrs.get("heartbeat_interval", getattr(self.instance, "heartbeat_interval", 0.5))
        timeout = attrs.get("failover_timeout", getattr(self.instance, "failover_timeout", 3.0))
        lease = attrs.get("lease", getattr(self.instance, "lease", 1.5))
        if timeout < 2 * interval:
            raise serializers.ValidationError(
                {"failover_timeout": ["Must be at least twice the heartbeat interval."]}
            )
        if lease >= timeout:
            raise serializers.ValidationError(
                {"lease": ["Must be shorter than the failover timeout."]}
            )
        replica_count = attrs.get("replica_count")
        if self.instance is not None and replica_count is not None:
            refusal = replica_count_refusal(self.instance, replica_count)
            if refusal:
                raise serializers.ValidationError({"replica_count": [refusal]})
        return attrs


class NodeSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all())

    class Meta:
        model = Node
        fields = ["name", "cluster", "archive_location", *NODE_REPORTED_FIELDS]
        read_only_fields = NODE_REPORTED_FIELDS

    def validate_archive_location(self, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise serializers.ValidationError(
                "Must be a PostgreSQL URL such as postgresql://user@host:5432/archive_db."
            )
        return value

    def update(self, instance, validated_data):
        if "cluster" in validated_data and validated_data["cluster"] != instance.cluster:
            raise serializers.ValidationError(
                {"cluster": ["A node cannot move to another cluster; register a new node."]}
            )
        return super().update(instance, validated_data)


class RegisteredNodeSerializer(NodeSerializer):
    """The answer to a registration: the node plus its secret, shown this once."""

    secret = serializers.CharField(read_only=True)

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "secret"]


class RoleChangeSerializer(serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="name", read_only=True)
    old_leader = serializers.SlugRelatedField(slug_field="name", read_only=True)
    new_leader = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = RoleChange
        fields = ["id", "cluster", "term", "old_leader", "new_leader", "reason", "actor", "created_at"]


class AssignLeaderSerializer(StrictFieldsMixin, serializers.Serializer):
    node = serializers.CharField(help_text="Name of the node to make leader.")
    reason = serializers.CharField(required=False, max_length=400, default="")
    expected_term = serializers.IntegerField(
        required=False, min_value=0, help_text="Refuse (412) unless the cluster is at this term."
    )
    expected_leader = serializers.CharField(
        required=False, help_text="Refuse (412) unless this node is the leader now."
    )
    timeout = serializers.FloatField(
        required=False, default=10.0, min_value=0.5, max_value=120.0,
        help_text="Seconds for the target to catch up before the switchover is abandoned.",
    )


class SwitchoverSerializer(AssignLeaderSerializer):
    node = serializers.CharField(help_text="The follower to hand leadership to.")
    expected_leader = serializers.CharField(help_text="The leader you expect now (412 if stale).")
    expected_term = serializers.IntegerField(min_value=0, help_text="The term you expect now (412 if stale).")


class CommandBatchSerializer(StrictFieldsMixin, serializers.Serializer):
    commands = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=10_000,
        help_text=(
            'Commands as JSON objects, e.g. {"type": "place_order", "client_id": "c1", '
            '"client_seq": 1, "account": "a1", "symbol": "DEMO", "side": "buy", "qty": 10, '
            '"price": 100}. Each needs client_id and a client_seq that increases per client.'
        ),
    )
    timeout = serializers.FloatField(
        required=False, default=5.0, min_value=0.1, max_value=60.0,
        help_text="Seconds to wait for the committed results.",
    )
