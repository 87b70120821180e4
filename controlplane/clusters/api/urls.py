"""Routes of the operators' API under /api/v1/."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from controlplane.clusters.api.node_views import NodeHeartbeatView
from controlplane.clusters.api.views import (
    ClusterViewSet,
    NodeViewSet,
    OperatorActionViewSet,
    RoleChangeViewSet,
    TradingAccountViewSet,
    TradingClientViewSet,
)

router = DefaultRouter()
router.register("clusters", ClusterViewSet)
router.register("nodes", NodeViewSet)
router.register("role-changes", RoleChangeViewSet)
router.register("operator-actions", OperatorActionViewSet)
router.register("trading-accounts", TradingAccountViewSet)
router.register("trading-clients", TradingClientViewSet)

urlpatterns = [
    path("nodes/<slug:name>/heartbeat/", NodeHeartbeatView.as_view(), name="node-heartbeat"),
    *router.urls,
]
