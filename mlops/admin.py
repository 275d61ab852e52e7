"""Django admin for model versions, training runs and what workers loaded.

The model version list opens with the routing status line ("NLI model X could not be loaded (reason);
routing with ensemble") whenever routing does not run on the configured scorer.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from .inference import availability  # noqa: F401  (registers the start-up system check for routing models)
from .models import ModelVersion, ScorerHealth, TrainingRun


def _json_field(name: str, title: str):
    """A read-only admin column showing a JSON field indented."""

    @admin.display(description=title)
    def show(self, obj):
        value = getattr(obj, name)
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))

    return show


class RoutingStatusMixin:
    """Shows the routing status line above a changelist when routing is degraded."""

    def changelist_view(self, request, extra_context=None):
        from .health import routing_status

        try:
            status = routing_status()
        except Exception as exc:  # the admin must open even if the status cannot be read
            self.message_user(request, f"routing status unavailable: {exc}", level=messages.WARNING)
        else:
            if status:
                self.message_user(request, str(status), level=messages.WARNING)
        return super().changelist_view(request, extra_context)


@admin.register(ModelVersion)
class ModelVersionAdmin(RoutingStatusMixin, admin.ModelAdmin):
    list_display = ("version", "scorer", "status", "model_ref", "temperature", "created_at", "promoted_at")
    list_filter = ("status", "scorer")
    search_fields = ("version", "model_ref")
    readonly_fields = (
        "scorer",
        "model_ref",
        "version",
        "artifact_path",
        "created_at",
        "promoted_at",
        "trigger",
        "triggered_by",
        "data_hash",
        "training_seconds",
        "error",
        "config_pretty",
        "calibration_pretty",
        "thresholds_pretty",
        "metrics_pretty",
        "label_counts_pretty",
    )
    exclude = ("config", "calibration", "thresholds", "metrics", "label_counts")

    def has_add_permission(self, request) -> bool:
        return False  # versions come from routing (zero-shot) and retraining, never typed in

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # promotion goes through mlops.registry.promote_version (the registry page)

    @admin.display(description="T")
    def temperature(self, obj: ModelVersion):
        return (obj.calibration or {}).get("temperature")

    config_pretty = _json_field("config", "config")
    calibration_pretty = _json_field("calibration", "calibration")
    thresholds_pretty = _json_field("thresholds", "proposed thresholds")
    metrics_pretty = _json_field("metrics", "metrics")
    label_counts_pretty = _json_field("label_counts", "label counts")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("model_version", "state", "started_at", "finished_at")
    list_filter = ("state",)
    readonly_fields = [f.name for f in TrainingRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ScorerHealth)
class ScorerHealthAdmin(RoutingStatusMixin, admin.ModelAdmin):
    list_display = ("host", "requested", "model_ref", "active_scorer", "ok", "message", "reported_at")
    list_filter = ("ok", "requested")
    readonly_fields = [f.name for f in ScorerHealth._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
