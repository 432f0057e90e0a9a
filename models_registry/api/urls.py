"""/api/v1/ (the registry API), /api/schema/ (OpenAPI), /api/docs/ and /api/redoc/ (browsable)."""

from __future__ import annotations

from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from models_registry.api import views

router = SimpleRouter()
router.register("models", views.ModelNameViewSet, basename="model")
router.register("versions", views.VersionViewSet, basename="version")
router.register("validation-runs", views.ValidationRunViewSet, basename="validation-run")
router.register("paper-runs", views.PaperRunViewSet, basename="paper-run")
router.register("targets", views.TargetViewSet, basename="target")
router.register("deployments", views.DeploymentViewSet, basename="deployment")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")

v1 = [
    path("", views.api_root, name="root"),
    path("me/", views.WhoAmIView.as_view(), name="me"),
    *router.urls,
]

urlpatterns = [
    path("v1/", include((v1, "api"), namespace="api")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("problems/<str:slug>/", views.problem_type_view, name="api-problem-type"),
    # Anything else under /api/: a problem document, with DEBUG on or off alike.
    # (csrf_exempt: a token client's POST to a wrong path gets the 404, not a CSRF page.)
    re_path(r"^", csrf_exempt(views.api_not_found)),
]
