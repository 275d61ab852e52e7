"""URLs under ``/models/`` (namespace ``learning``): threshold tuning, quality reports, the model registry,
model diagnostics."""

from __future__ import annotations

from django.urls import path

from . import views, views_diagnostics, views_registry, views_teams

app_name = "learning"

tuning_urls = [
    path("tuning/", views.tuning_page, name="tuning"),
    path("tuning/what-if/", views.what_if, name="what_if"),
    path("tuning/suggest/", views.suggest_thresholds, name="suggest_thresholds"),
    path("tuning/apply/", views.apply_thresholds, name="apply_thresholds"),
    path("tuning/teams/<slug:slug>/", views.save_team_routing, name="save_team_routing"),
    path("tuning/tags/what-if/", views.tag_what_if, name="tag_what_if"),
    path("tuning/tags/<int:pk>/", views.save_tag_threshold, name="save_tag_threshold"),
    path("teams/<slug:slug>/", views_teams.team_page, name="team"),
    path("teams/<slug:slug>/preview/", views_teams.start_preview, name="team_preview"),
    path("teams/<slug:slug>/preview/<str:task_id>/", views_teams.preview_result, name="team_preview_result"),
]

report_urls = [
    path("reports/", views.reports_page, name="reports"),
]

registry_urls = [
    path("", views_registry.registry, name="models"),
    path("retrain/", views_registry.retrain, name="retrain"),
    path("self-train/", views_registry.self_train, name="self_train"),
    path("tag-sets/<slug:slug>/train/", views_registry.train_tags, name="train_tags"),
    path("runs/<int:pk>/", views_registry.run_progress, name="training_run"),
    path("versions/<int:pk>/", views_registry.version_detail, name="model_version"),
    path("versions/<int:pk>/rollback/", views_registry.rollback, name="rollback"),
]

diagnostics_urls = [
    path("diagnostics/", views_diagnostics.diagnostics_page, name="diagnostics"),
    path("diagnostics/run/", views_diagnostics.run_diagnostics, name="diagnostics_run"),
    path("diagnostics/run/<str:task_id>/", views_diagnostics.diagnostics_run, name="diagnostics_result"),
]

urlpatterns = [*tuning_urls, *report_urls, *registry_urls, *diagnostics_urls]
