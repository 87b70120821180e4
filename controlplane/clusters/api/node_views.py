"""Endpoints the nodes themselves call, authenticated by their own secret, not a user."""

from __future__ import annotations

import redis
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.clusters import replication, services, streams, trading
from controlplane.clusters.api.responses import DetailSerializer, NodeConfigSerializer
from controlplane.clusters.api.serializers import StrictFieldsMixin
from controlplane.clusters.models import Node, NodeStatus
from wire.nonces import NONCE_MAX, marks_refusal

NODE_AUTH_SCHEME = "Node"


class HeartbeatSerializer(StrictFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[NodeStatus.STARTING, NodeStatus.LIVE, NodeStatus.DRAINING]
    )
    status_message = serializers.CharField(required=False, allow_blank=True, default="")
    term = serializers.IntegerField(min_value=0, required=False, default=0)
    archived_position = serializers.IntegerField(min_value=0)
    applied_position = serializers.IntegerField(min_value=0)
    state_hash = serializers.CharField(required=False, allow_blank=True, default="", max_length=128)
    state_hash_position = serializers.IntegerField(min_value=0, required=False, default=0)
    software_version = serializers.CharField(required=False, allow_blank=True, default="")
    archive_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    last_term = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, default=0)
    fence_seen = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, default=0)
    stalled_for = serializers.FloatField(min_value=0, max_value=1e9, required=False, default=0.0)
    truncations = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, default=0)
    settled_quorum = serializers.IntegerField(min_value=-1, max_value=1000, required=False, default=-1)
    report_boot = serializers.CharField(required=False, allow_blank=True, default="", max_length=32)
    report_seq = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, default=0)
    echo_epoch = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, default=0)
    archive_first_position = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, default=0)
    archive_bytes = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, default=0)
    snapshot_position = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, default=0)
    client_nonces = serializers.DictField(
        child=serializers.IntegerField(min_value=1, max_value=NONCE_MAX), required=False, default=dict,
        help_text="A leader's batch-nonce marks: per client key id, the highest nonce it acknowledged.",
    )

    def validate_client_nonces(self, value: dict[str, int]) -> dict[str, int]:
        refusal = marks_refusal(value)
        if refusal:
            raise serializers.ValidationError(refusal)
        return value


def node_config(node: Node) -> dict:
    """Everything a node needs to take its role: the heartbeat's answer. The cluster's
    nodes are read once, fresh, and give the leader's and the switchover target's names."""
    now = services.db_now()
    # The cluster's nodes and the cluster itself, fresh, in one query: `node` may be the
    # row as the heartbeat locked it, before its own update and a role change since.
    nodes = list(Node.objects.select_related("cluster").filter(cluster_id=node.cluster_id).order_by("name"))
    node = next((n for n in nodes if n.pk == node.pk), node)
    cluster = node.cluster
    names = {n.pk: n.name for n in nodes}
    switchover = names.get(cluster.switchover_target_id)
    in_flight = switchover is not None and cluster.switchover_deadline > now
    return {
        "node": node.name,
        "cluster": cluster.name,
        "role": node.role,
        "term": cluster.term,
        "leader": names.get(cluster.leader_id),
        "replica_count": cluster.replica_count,
        "write_quorum": cluster.write_quorum,
        "heartbeat_interval": cluster.heartbeat_interval,
        "failover_timeout": cluster.failover_timeout,
        "lease": cluster.lease,
        "archive_location": node.archive_location,
        "archive_id": node.archive_id,
        "resyncing": node.resyncing,
        "report_epoch": cluster.report_epoch,
        "switchover_to": switchover if in_flight else None,
        # Client keys and grants go to the leader only, which checks batches with them.
        "trading": trading.leader_policy(cluster) if cluster.leader_id == node.pk else None,
        # Every node's: acks and live-stream entries are signed and checked with these.
        "replication": replication.node_keys(cluster, now),
        # Only the leader counts acks: the others need no member list.
        "members": (
            [n.name for n in nodes if n.pk != node.pk and n.status != NodeStatus.REMOVED]
            if cluster.leader_id == node.pk
            else []
        ),
        "keep_events": cluster.archive_keep_events,
        "retention_floor": services.retention_floor(cluster, nodes, now),
    }


def authenticate_node(request, name: str) -> Node:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme != NODE_AUTH_SCHEME or not secret:
        raise AuthenticationFailed("Send 'Authorization: Node <secret>' with the node's secret.")
    # order_by(): no join to the cluster for Node's default ordering, on every heartbeat
    node = Node.objects.only("pk", "name", "credentials_hash", "next_credentials_hash").filter(name=name).order_by()[:1]
    node = node[0] if node else None
    if node is None:
        raise PermissionDenied(f"node {name} is not registered; register it first")
    if not services.check_node_credentials(node, secret.strip()):
        raise PermissionDenied(f"wrong credentials for node {name}")
    return node


class NodeHeartbeatView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Nodes behind one address beat several times a second: the secret (256 bits) is the
    # protection, not a rate.
    throttle_classes: list = []
    metadata_class = None  # no OPTIONS answer to whoever asks: only POST, with the node's secret

    def get_authenticate_header(self, request) -> str:
        return f'{NODE_AUTH_SCHEME} realm="nodes"'  # makes a missing secret a 401, not a 403

    @extend_schema(
        request=HeartbeatSerializer,
        parameters=[OpenApiParameter("Authorization", str, OpenApiParameter.HEADER)],
        responses={200: NodeConfigSerializer, 401: DetailSerializer, 403: DetailSerializer, 409: DetailSerializer},
    )
    def post(self, request, name: str):
        """A node's heartbeat: store its report, answer with its role, term and cluster."""
        authenticate_node(request, name)
        body = HeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            node = services.record_heartbeat(name, services.HeartbeatReport(**body.validated_data))
        except services.ImpossibleReport as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        except services.NotEligible as error:  # removed: the node must stop, not retry
            raise PermissionDenied(str(error)) from None
        # Redis down: the report is stored; the fence is restored once Redis is back.
        if streams.fence_worth_trying():
            try:
                services.restore_fence(node.cluster)
            except redis.RedisError:
                streams.fence_failed()  # the supervisor's cycles go on restoring it
        return Response(node_config(node), status=status.HTTP_200_OK)
