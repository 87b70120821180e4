"""REST API views: declarative viewsets whose verbs call one service function each."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, PermissionDenied
from rest_framework.response import Response

from controlplane import admission
from controlplane.clusters import commands as cluster_commands
from controlplane.clusters import maintenance, services, streams, switchover, trading
from controlplane.clusters.api.permissions import CanSubmitCommands
from controlplane.clusters.api.responses import (
    BookSerializer,
    CommandErrorsSerializer,
    CommandResultsSerializer,
    DetailSerializer,
    EventsSerializer,
    ForceLeaderErrorsSerializer,
    OrderStatusSerializer,
)
from controlplane.clusters.api.serializers import (
    AssignLeaderSerializer,
    ClusterSerializer,
    CommandBatchSerializer,
    ForceLeaderSerializer,
    NodeSerializer,
    OperatorActionSerializer,
    PauseSerializer,
    RegisteredNodeSerializer,
    RoleChangeSerializer,
    ServiceErrorSerializer,
    StrictFieldsMixin,
    SwitchoverSerializer,
    TradingAccountSerializer,
    TradingClientSerializer,
)
from controlplane.clusters.models import (
    Cluster,
    Node,
    OperatorAction,
    RoleChange,
    TradingAccount,
    TradingClient,
)
from wire import rpc

# URL parts are matched tightly, so that a name PostgreSQL cannot hold (NUL, 200 characters)
# or a number past 64 bits is a 404, never a query that fails (DESIGN: no 500 from input).
NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
INT64_PATTERN = r"[0-9]{1,18}"


def ask_leader(request, cluster: Cluster, op: str, **args):
    """A read-only request to the cluster's leader (wire/rpc.py), waiting on Redis up to
    LEADER_READ_TIMEOUT (when the leader is gone) with its turn and connection given back."""
    leader = cluster.leader
    if leader is None:
        raise ServiceUnavailable(f"cluster {cluster.name} has no leader")
    admission.step_aside(request)
    try:
        return rpc.ask(
            streams.tasks(), streams.connection(), cluster.name, leader.name, op,
            timeout=settings.LEADER_READ_TIMEOUT, **args,
        )  # fmt: skip
    except rpc.PeerUnavailable as error:
        raise ServiceUnavailable(f"the leader did not answer: {error}") from None


def by_cluster(what: str):
    """The `?cluster=NAME` filter of a list, documented in the OpenAPI document."""
    return extend_schema_view(
        list=extend_schema(
            parameters=[OpenApiParameter("cluster", str, description=f"Only the {what} of this cluster (its name).")]
        )
    )


class ByClusterMixin:
    """Lists that `?cluster=NAME` filters (see by_cluster for its documentation)."""

    def get_queryset(self):
        queryset = super().get_queryset()
        cluster = self.request.query_params.get("cluster")
        return queryset.filter(cluster__name=cluster) if cluster else queryset


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "the cluster cannot answer now"


class BookQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    symbol = serializers.CharField(max_length=128)
    levels = serializers.IntegerField(min_value=1, max_value=1000, default=10)


class EventsQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=50)


class SnapshotAcceptedSerializer(serializers.Serializer):
    node = serializers.CharField()
    task_id = serializers.CharField(help_text="The id of the snapshot request (a `nodes.request` task on the node's queue).")


class ClusterReadsMixin:
    """Reads answered by the leader: its order book, an order, its latest events."""

    @extend_schema(
        parameters=[BookQuerySerializer],
        responses={200: BookSerializer, 404: DetailSerializer, 503: DetailSerializer},
    )
    @action(detail=True, methods=["get"])
    def book(self, request, name=None):
        """Aggregated depth of an instrument's book, best first: bids/asks as [price, qty, orders]."""
        query = BookQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        depth = ask_leader(request, self.get_object(), "depth", **query.validated_data)
        if depth is None:
            raise NotFound(f"no instrument {query.validated_data['symbol']!r} in this cluster")
        return Response(depth)

    @extend_schema(responses={200: OrderStatusSerializer, 404: DetailSerializer, 503: DetailSerializer})
    @action(detail=True, methods=["get"], url_path=rf"orders/(?P<order_id>{INT64_PATTERN})")
    def order(self, request, name=None, order_id=None):
        """An order's status: resting (with its remaining quantity) or closed."""
        found = ask_leader(request, self.get_object(), "order", order_id=int(order_id))
        if found is None:
            raise NotFound(f"no order {order_id} in this cluster")
        return Response(found)

    @extend_schema(parameters=[EventsQuerySerializer], responses={200: EventsSerializer, 503: DetailSerializer})
    @action(detail=True, methods=["get"])
    def events(self, request, name=None):
        """The latest events of the cluster's log (from the leader's archive), oldest first."""
        query = EventsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        return Response({"events": ask_leader(request, self.get_object(), "events", **query.validated_data)})


class ClusterViewSet(
    ClusterReadsMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Cluster.objects.select_related("leader", "last_leader").prefetch_related("nodes")
    serializer_class = ClusterSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN

    def _change_leader(self, request, serializer_class, default_reason: str) -> Response:
        cluster = self.get_object()
        body = serializer_class(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        # A role change waits up to its timeout for the target (it polls the database, one
        # connection): it gives its turn back, so that one switchover in flight does not
        # halve the API's turns (one at a time per cluster: another is refused at once).
        admission.give_back_turn(request)
        change = switchover.change_leader(
            cluster.name,
            data["node"],
            actor=services.Actor.of_user(request.user),
            reason=data["reason"] or default_reason,
            expected_term=data.get("expected_term"),
            expected_leader=data.get("expected_leader"),
            timeout=data["timeout"],
        )
        return Response(RoleChangeSerializer(change).data, status=status.HTTP_200_OK)

    @extend_schema(
        request=AssignLeaderSerializer,
        responses={200: RoleChangeSerializer, 409: ServiceErrorSerializer, 412: ServiceErrorSerializer},
    )
    @action(detail=True, methods=["post"])
    def leader(self, request, name=None):
        """Make a node the leader under a new term, safely: a planned switchover when the
        leader is live; with no live leader, only if the election rules choose that node
        from the nodes' reports. 409 with the reason when refused (force-leader is the
        audited way around), 412 when expected_term/expected_leader is stale."""
        return self._change_leader(request, AssignLeaderSerializer, "leader assigned through the API")

    @extend_schema(
        request=SwitchoverSerializer,
        responses={200: RoleChangeSerializer, 409: ServiceErrorSerializer, 412: ServiceErrorSerializer},
    )
    @action(detail=True, methods=["post"])
    def switchover(self, request, name=None):
        """Planned switchover: the leader stops taking commands, the target catches up to
        its last position, then the term is bumped and the roles swap. Needs the expected
        leader and term. 409 (target lagging, offline, not in the cluster, another
        switchover in flight) or 412 (stale expectation) with the reason."""
        return self._change_leader(request, SwitchoverSerializer, "switchover through the API")

    @extend_schema(
        request=ForceLeaderSerializer,
        responses={200: RoleChangeSerializer, 400: ForceLeaderErrorsSerializer, 409: ServiceErrorSerializer},
    )
    @action(detail=True, methods=["post"], url_path="force-leader")
    def force_leader(self, request, name=None):
        """Unsafe election, like Kafka's unclean.leader.election: the named live node leads
        whatever the election rules say (a live leader's term is ended first), so results
        already reported committed may be lost. Needs "confirm": true (400 without, saying
        so) and a reason; the role change is audited and names what may be lost. 409 with
        the reason when refused (the node is not live, or not a node of the cluster)."""
        cluster = self.get_object()
        body = ForceLeaderSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        change = services.force_leader(
            cluster.name,
            body.validated_data["node"],
            actor=services.Actor.of_user(request.user),
            reason=body.validated_data["reason"],
        )
        return Response(RoleChangeSerializer(change).data, status=status.HTTP_200_OK)

    @extend_schema(request=PauseSerializer, responses={200: ClusterSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request, name=None):
        """Maintenance mode (Patroni's pause): the supervisor keeps watching and marks silent
        nodes offline, but never ends a term or elects by itself until resumed; planned
        switchovers and forced elections still work. Audited; pausing a paused cluster
        changes nothing."""
        return self._set_paused(request, True)

    @extend_schema(request=PauseSerializer, responses={200: ClusterSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, name=None):
        """Leave maintenance mode: automatic failover is on again from the next supervisor
        cycle (a leader that went silent meanwhile is failed over then). Audited."""
        return self._set_paused(request, False)

    def _set_paused(self, request, paused: bool) -> Response:
        cluster = self.get_object()
        body = PauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = maintenance.set_paused(
            cluster, paused, actor=services.Actor.of_user(request.user), reason=body.validated_data["reason"]
        )
        return Response(self.get_serializer(changed).data)

    @extend_schema(
        request=CommandBatchSerializer,
        responses={
            200: CommandResultsSerializer,
            400: CommandErrorsSerializer,
            409: CommandResultsSerializer,
            503: DetailSerializer,
            504: DetailSerializer,
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[CanSubmitCommands])
    def commands(self, request, name=None):
        """Submit one command (a JSON object) or a batch ({"commands": [...]}); wait for commit.

        200: every command's committed events. 409: the command(s) were processed before;
        the body holds the original result. 400: malformed, nothing sent. 503: fewer
        followers acknowledge than the write quorum. 504: no commit within the timeout.
        """
        cluster = self.get_object()
        data = request.data
        if isinstance(data, dict) and "commands" not in data:
            data = {"commands": [data]}
        elif isinstance(data, list):
            data = {"commands": data}
        body = CommandBatchSerializer(data=data)
        body.is_valid(raise_exception=True)
        commands, errors = cluster_commands.parse_commands(body.validated_data["commands"])
        if errors:
            return Response({"commands": errors}, status=status.HTTP_400_BAD_REQUEST)
        # Trading permissions: checked here, before anything enters the log.
        try:
            refusals = trading.api_refusals(cluster, request.user, commands)
        except trading.NotATradingClient as error:
            raise PermissionDenied(str(error)) from None
        if refusals:
            return Response(
                {"detail": "refused: not permitted for this trading client; nothing was sent",
                 "commands": refusals},
                status=status.HTTP_403_FORBIDDEN,
            )  # fmt: skip
        # The wait for the commit is on Redis.
        admission.step_aside(request)
        try:
            submission = cluster_commands.submit(
                cluster.name, commands, body.validated_data["timeout"]
            )
        except cluster_commands.NotEnoughReplicas as error:
            return Response({"detail": str(error)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        except cluster_commands.CommitTimeout as error:
            return Response({"detail": str(error)}, status=status.HTTP_504_GATEWAY_TIMEOUT)
        except cluster_commands.CommandRefused as error:
            return Response({"detail": f"refused by the leader: {error}"}, status=status.HTTP_403_FORBIDDEN)
        code = status.HTTP_409_CONFLICT if submission.all_duplicates else status.HTTP_200_OK
        return Response({"results": submission.as_json()}, status=code)


@by_cluster("nodes")
class NodeViewSet(
    ByClusterMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Node.objects.select_related("cluster")
    serializer_class = NodeSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN


    @extend_schema(responses={201: RegisteredNodeSerializer})
    def create(self, request, *args, **kwargs):
        """Register a node; the answer carries its secret, shown only this once."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        node, secret = maintenance.register_node(
            **serializer.validated_data, actor=services.Actor.of_user(request.user)
        )
        data = RegisteredNodeSerializer(node).data
        data["secret"] = secret
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: NodeSerializer, 409: ServiceErrorSerializer})
    @action(detail=True, methods=["post"])
    def remove(self, request, name=None):
        """Take a follower out of its cluster: its heartbeats are refused from now on (it
        stops) and its acks no longer count. 409 with the reason for the leader, or when
        fewer followers than the write quorum would remain."""
        node = maintenance.remove_node(self.get_object().name, actor=services.Actor.of_user(request.user))
        return Response(NodeSerializer(node).data, status=status.HTTP_200_OK)

    @extend_schema(request=None, responses={202: SnapshotAcceptedSerializer, 409: ServiceErrorSerializer})
    @action(detail=True, methods=["post"])
    def snapshot(self, request, name=None):
        """Ask the node to snapshot its state between two batches (a request on its queue).
        202 with the request id; `manage.py cluster snapshot NODE` waits for it."""
        task = maintenance.request_snapshot(self.get_object().name, actor=services.Actor.of_user(request.user))
        return Response({"node": name, "task_id": task.id}, status=status.HTTP_202_ACCEPTED)


@by_cluster("role changes")
class RoleChangeViewSet(ByClusterMixin, viewsets.ReadOnlyModelViewSet):
    queryset = RoleChange.objects.select_related("cluster", "old_leader", "new_leader")
    lookup_value_regex = INT64_PATTERN
    serializer_class = RoleChangeSerializer



@by_cluster("operator actions")
class OperatorActionViewSet(ByClusterMixin, viewsets.ReadOnlyModelViewSet):
    """The audit of operator actions that are not term changes (pause, resume, write quorum,
    replicas, node registration and removal, snapshots); `?cluster=NAME` filters."""

    queryset = OperatorAction.objects.select_related("cluster", "node")
    lookup_value_regex = INT64_PATTERN
    serializer_class = OperatorActionSerializer



class TradingAccountViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Accounts orders are placed for (operators register them; anyone signed in reads)."""

    queryset = TradingAccount.objects.all()
    serializer_class = TradingAccountSerializer
    lookup_field = "name"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}"


class TradingClientViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Trading clients and their granted accounts; client ids are the name or `name.*`.
    Signing keys are issued in the admin or with `manage.py client_key` (secret shown once)."""

    queryset = TradingClient.objects.select_related("user").prefetch_related("accounts", "keys")
    serializer_class = TradingClientSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN
