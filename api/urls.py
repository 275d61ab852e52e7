from __future__ import annotations

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny
from rest_framework.routers import DefaultRouter

from . import views

app_name = "api"

router = DefaultRouter()
router.register("tickets", views.TicketViewSet, basename="ticket")
router.register("teams", views.TeamViewSet, basename="team")
router.register("thresholds", views.ThresholdViewSet, basename="threshold")
router.register("model-versions", views.ModelVersionViewSet, basename="model-version")
router.register("articles", views.ArticleViewSet, basename="article")

# The schema and its docs are public: integrators read them before they have a token.
public = {"permission_classes": [AllowAny], "authentication_classes": []}
# Swagger UI's start-up script is served as a file (the split view), so no inline script runs; both docs
# pages write inline styles as they render (Redoc also starts a worker from a blob), which the site-wide
# Content-Security-Policy refuses. They show the public schema only, so they get that much more.
docs_policy = csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(**public), name="schema"),
    path("docs/", docs_policy(SpectacularSwaggerSplitView.as_view(url_name="api:schema", **public)), name="docs"),
    path("redoc/", docs_policy(SpectacularRedocView.as_view(url_name="api:schema", **public)), name="redoc"),
    path("deflect/", views.DeflectView.as_view(), name="deflect"),
    *router.urls,
]
