"""URLs under ``/models/`` (namespace ``mlops``).

Each group of pages keeps its own list so that another module's pages (the model registry in
``mlops/views_registry.py``) join by concatenation, e.g. ``urlpatterns = [*tuning_urls, *report_urls,
*registry_urls]``, or with ``path("", include(...))``.
"""

from __future__ import annotations

from django.urls import path

from . import views
from .urls_registry import registry_urls

app_name = "mlops"

tuning_urls = [
    path("tuning/", views.tuning_page, name="tuning"),
    path("tuning/what-if/", views.what_if, name="what_if"),
    path("tuning/suggest/", views.suggest_thresholds, name="suggest_thresholds"),
    path("tuning/apply/", views.apply_thresholds, name="apply_thresholds"),
    path("tuning/teams/<slug:slug>/", views.save_team_routing, name="save_team_routing"),
]

report_urls = [
    path("reports/", views.reports_page, name="reports"),
]

urlpatterns = [*tuning_urls, *report_urls, *registry_urls]
