"""API serializers. Unknown fields are refused (400) rather than silently ignored."""

from __future__ import annotations

import copy

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework import serializers

from controlplane.clusters import maintenance, services
from controlplane.clusters.models import (
    NODE_REPORTED_FIELDS,
    Cluster,
    Node,
    OperatorAction,
    RoleChange,
    TradingAccount,
    TradingClient,
)
from controlplane.clusters.switchover import replica_count_refusal
from nodes.protocol.quorum import default_write_quorum


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


def _as_if(cluster: Cluster, **values) -> Cluster:
    """A copy of `cluster` with some fields changed, to judge a request that changes several."""
    prospective = copy.copy(cluster)
    for name, value in values.items():
        setattr(prospective, name, value)
    return prospective


class ClusterSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    leader = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    last_leader = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True, help_text="The leader of the last term that had one."
    )
    nodes = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    write_quorum = serializers.IntegerField(
        min_value=0,
        max_value=32767,
        required=False,
        help_text=(
            "Write quorum (W): follower acks a commit needs, 0 to replica_count. Omitted on "
            "create: the majority ceil(N/2). Raising it above the live followers is refused."
        ),
    )
    tolerance = serializers.CharField(
        read_only=True, help_text="What the replica count and write quorum survive, in one sentence."
    )

    class Meta:
        model = Cluster
        fields = [
            "name",
            "replica_count",
            "write_quorum",
            "tolerance",
            "term",
            "leader",
            "last_leader",
            "status",
            "status_message",
            "heartbeat_interval",
            "failover_timeout",
            "lease",
            "archive_keep_events",
            "trading_checks",
            "paused",
            "paused_reason",
            "paused_at",
            "nodes",
            "created_at",
        ]
        read_only_fields = [
            "term", "leader", "status", "status_message", "paused", "paused_reason", "paused_at",
            "nodes", "created_at",
        ]  # fmt: skip

    def validate(self, attrs):
        interval = attrs.get("heartbeat_interval", self._current("heartbeat_interval"))
        timeout = attrs.get("failover_timeout", self._current("failover_timeout"))
        lease = attrs.get("lease", self._current("lease"))
        if timeout < 2 * interval:
            raise serializers.ValidationError(
                {"failover_timeout": ["Must be at least twice the heartbeat interval."]}
            )
        if lease >= timeout:
            raise serializers.ValidationError(
                {"lease": ["Must be shorter than the failover timeout."]}
            )
        errors = self._quorum_errors(attrs)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _current(self, name: str):
        """The instance's value, or on create the model's default (which follows the settings)."""
        if self.instance is not None:
            return getattr(self.instance, name)
        return Cluster._meta.get_field(name).get_default()

    def _quorum_errors(self, attrs) -> dict[str, list[str]]:
        """N and W judged together: a request may lower both, or raise both, at once."""
        if self.instance is None:
            replicas = attrs.get("replica_count", Cluster._meta.get_field("replica_count").default)
            quorum = attrs.get("write_quorum", default_write_quorum(replicas))
            if quorum > replicas:
                return {
                    "write_quorum": [
                        f"The write quorum must be between 0 and the replica count ({replicas})."
                    ]
                }
            return {}
        replicas = attrs.get("replica_count", self.instance.replica_count)
        quorum = attrs.get("write_quorum", self.instance.write_quorum)
        errors = {}
        if "replica_count" in attrs:
            refusal = replica_count_refusal(_as_if(self.instance, write_quorum=quorum), replicas)
            if refusal:
                errors["replica_count"] = [refusal]
        if "write_quorum" in attrs:
            refusal = services.write_quorum_refusal(_as_if(self.instance, replica_count=replicas), quorum)
            if refusal:
                errors["write_quorum"] = [refusal]
        return errors

    def create(self, validated_data):
        replicas = validated_data.get("replica_count", Cluster._meta.get_field("replica_count").default)
        validated_data.setdefault("write_quorum", default_write_quorum(replicas))
        validated_data["term_write_quorum"] = validated_data["write_quorum"]
        return super().create(validated_data)

    def update(self, instance, validated_data):
        """W changes through services.set_write_quorum (audited, refused with a reason); the
        other fields are saved by name only, so a term or leader the supervisor changed
        meanwhile is never written back. Lowering W goes before lowering N, raising N
        before raising W, so every step keeps W <= N; all in one transaction."""
        quorum = validated_data.pop("write_quorum", None)
        if quorum == instance.write_quorum:
            quorum = None
        lowering = quorum is not None and quorum < instance.write_quorum
        replicas_before = instance.replica_count
        with transaction.atomic():
            if lowering:
                self._set_write_quorum(instance, quorum)
            for name, value in validated_data.items():
                setattr(instance, name, value)
            if validated_data:
                instance.save(update_fields=list(validated_data))
                maintenance.record_replica_count(instance, replicas_before, actor=self._actor())
            if quorum is not None and not lowering:
                self._set_write_quorum(instance, quorum)
        instance.refresh_from_db()
        return instance

    def _actor(self) -> services.Actor:
        return services.Actor.of_user(self.context["request"].user)

    def _set_write_quorum(self, cluster: Cluster, quorum: int) -> None:
        try:
            maintenance.set_write_quorum(cluster, quorum, actor=self._actor())
        except services.NotEligible as error:
            raise serializers.ValidationError({"write_quorum": [str(error)]}) from None


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
    old_leader = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    new_leader = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = RoleChange
        fields = ["id", "cluster", "term", "old_leader", "new_leader", "reason", "actor", "created_at"]


class AssignLeaderSerializer(StrictFieldsMixin, serializers.Serializer):
    node = serializers.CharField(help_text="Name of the node to make leader.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=400, default="")
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


FORCE_WARNING = (
    "Forcing a leader skips the election's safety rules: the node you name leads even when "
    "other nodes hold events it lacks, so results already reported as committed may be lost "
    "(the audit records what). Send \"confirm\": true to accept that."
)


class ForceLeaderSerializer(StrictFieldsMixin, serializers.Serializer):
    node = serializers.CharField(help_text="The live node to make leader, whatever the election rules say.")
    reason = serializers.CharField(
        max_length=400, help_text="Why; recorded in the role-change audit with what may be lost."
    )
    confirm = serializers.BooleanField(
        default=False, help_text="Must be true: you accept that committed results may be lost."
    )

    def validate_confirm(self, value: bool) -> bool:
        if value is not True:
            raise serializers.ValidationError(FORCE_WARNING)
        return value


class ServiceErrorSerializer(serializers.Serializer):
    """The body of a refusal (409) or a stale expectation (412)."""

    detail = serializers.CharField(help_text="Why it was refused and what to do.")
    code = serializers.CharField(help_text="not_eligible, not_in_cluster, stale, ...")


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


class PauseSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=400, default="",
        help_text="Why; recorded in the audit (and shown on the dashboard while paused).",
    )  # fmt: skip


class OperatorActionSerializer(serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="name", read_only=True)
    node = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = OperatorAction
        fields = ["id", "cluster", "node", "action", "term", "detail", "reason", "actor", "created_at"]


class TradingAccountSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = TradingAccount
        fields = ["name", "description", "created_at"]
        read_only_fields = ["created_at"]


class TradingClientSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False, allow_null=True,
        help_text="The user whose API submissions are this client's.",
    )  # fmt: skip
    accounts = serializers.SlugRelatedField(
        slug_field="name", queryset=TradingAccount.objects.all(), many=True, required=False,
        help_text="The accounts this client may trade for.",
    )  # fmt: skip
    key_ids = serializers.SerializerMethodField(help_text="Its signing keys not revoked (ids only).")

    class Meta:
        model = TradingClient
        fields = ["name", "user", "accounts", "may_manage_instruments", "active", "key_ids", "created_at"]
        read_only_fields = ["created_at"]

    def get_key_ids(self, client: TradingClient) -> list[str]:
        return [key.key_id for key in client.keys.all() if key.revoked_at is None]
