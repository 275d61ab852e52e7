from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
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

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(**public), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", **public), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema", **public), name="redoc"),
    *router.urls,
]
