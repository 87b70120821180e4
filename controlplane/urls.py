"""Top-level routes: admin, the operators' API and its OpenAPI schema, probes and metrics."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from controlplane import health, metrics
from controlplane.clusters import dashboard


def not_found(request, exception=None):
    """404 for a URL that matches no route: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


handler404 = not_found

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("controlplane.clusters.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("dashboard/<slug:name>/", dashboard.dashboard, name="cluster-dashboard"),
    path(
        "dashboard/<slug:name>/status.json",
        dashboard.dashboard_status,
        name="cluster-dashboard-status",
    ),
]
