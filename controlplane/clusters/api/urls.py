"""Routes of the operators' API under /api/v1/."""

from rest_framework.routers import DefaultRouter

from controlplane.clusters.api.views import ClusterViewSet, NodeViewSet, RoleChangeViewSet

router = DefaultRouter()
router.register("clusters", ClusterViewSet)
router.register("nodes", NodeViewSet)
router.register("role-changes", RoleChangeViewSet)

urlpatterns = router.urls
