"""URLs of the model registry (``mlops/views_registry.py``), joined into ``mlops/urls.py``."""

from __future__ import annotations

from django.urls import path

from . import views_registry as views

registry_urls = [
    path("", views.registry, name="models"),
    path("retrain/", views.retrain, name="retrain"),
    path("runs/<int:pk>/", views.run_progress, name="training_run"),
    path("versions/<int:pk>/", views.version_detail, name="model_version"),
    path("versions/<int:pk>/rollback/", views.rollback, name="rollback"),
]
