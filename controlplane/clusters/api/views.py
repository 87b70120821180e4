"""REST API views: declarative viewsets whose verbs call one service function each."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.clusters import services
from controlplane.clusters.api.serializers import (
    AssignLeaderSerializer,
    ClusterSerializer,
    NodeSerializer,
    RegisteredNodeSerializer,
    RoleChangeSerializer,
)
from controlplane.clusters.models import Cluster, Node, RoleChange


class ClusterViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Cluster.objects.select_related("leader").prefetch_related("nodes")
    serializer_class = ClusterSerializer
    lookup_field = "name"

    @extend_schema(request=AssignLeaderSerializer, responses={200: RoleChangeSerializer})
    @action(detail=True, methods=["post"])
    def leader(self, request, name=None):
        """Make a node of this cluster its leader under a new term."""
        cluster = self.get_object()
        body = AssignLeaderSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        change = services.assign_leader(
            cluster,
            body.validated_data["node"],
            actor=services.Actor.of_user(request.user),
            reason=body.validated_data["reason"] or "assigned through the API",
            expected_term=body.validated_data.get("expected_term"),
        )
        return Response(RoleChangeSerializer(change).data, status=status.HTTP_200_OK)


class NodeViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Node.objects.select_related("cluster")
    serializer_class = NodeSerializer
    lookup_field = "name"
    filterset_fields = ["cluster"]

    def get_queryset(self):
        queryset = super().get_queryset()
        cluster = self.request.query_params.get("cluster")
        return queryset.filter(cluster__name=cluster) if cluster else queryset

    @extend_schema(responses={201: RegisteredNodeSerializer})
    def create(self, request, *args, **kwargs):
        """Register a node; the answer carries its secret, shown only this once."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        node, secret = services.register_node(**serializer.validated_data)
        data = RegisteredNodeSerializer(node).data
        data["secret"] = secret
        return Response(data, status=status.HTTP_201_CREATED)


class RoleChangeViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = RoleChange.objects.select_related("cluster", "old_leader", "new_leader")
    serializer_class = RoleChangeSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        cluster = self.request.query_params.get("cluster")
        return queryset.filter(cluster__name=cluster) if cluster else queryset
