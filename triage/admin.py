"""Django admin for teams (routing settings, audited), tickets, routing decisions and labels.

Predictions and labels are read-only here: they are what the router and agents did, kept as history.
Changes to a team's mode or threshold go through ``triage.team_services.set_team_routing`` so that
each one leaves a ``TeamChange`` audit row, as on the tuning page.
"""

from __future__ import annotations

from django.contrib import admin

from mlops.admin import RoutingStatusMixin

from .models import Correction, Prediction, Team, TeamChange, Ticket


class ReadOnlyInline(admin.TabularInline):
    """History rows shown under their parent: never added or edited here."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class TeamChangeInline(ReadOnlyInline):
    model = TeamChange
    fields = ("created_at", "user", "field", "before", "after", "reason")


@admin.register(Team)
class TeamAdmin(RoutingStatusMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "mode", "threshold", "active", "updated_at")
    list_filter = ("mode", "active")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    fields = ("name", "slug", "description", "hypothesis", "mode", "threshold", "active")
    inlines = [TeamChangeInline]

    def save_model(self, request, obj: Team, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        from triage.team_services import set_team_routing

        stored = Team.objects.get(pk=obj.pk)
        mode, threshold = obj.mode, obj.threshold
        obj.mode, obj.threshold = stored.mode, stored.threshold  # saved below, with their audit rows
        super().save_model(request, obj, form, change)
        set_team_routing(obj, mode=mode, threshold=threshold, user=request.user, reason="changed in the Django admin")


class PredictionInline(ReadOnlyInline):
    model = Prediction
    fields = ("created_at", "model_version", "scorer", "decision", "chosen_team", "confidence", "threshold")


class CorrectionInline(ReadOnlyInline):
    model = Correction
    fk_name = "ticket"
    fields = ("created_at", "kind", "from_team", "to_team", "agent", "source")


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "status", "team", "channel", "routing_attempts", "created_at")
    list_filter = ("status", "team", "channel")
    search_fields = ("subject", "body", "external_id", "requester")
    readonly_fields = ("routing_attempts", "routing_started_at", "routing_error", "created_at", "updated_at")
    raw_id_fields = ("assignee", "created_by")
    inlines = [PredictionInline, CorrectionInline]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = (
        "ticket",
        "decision",
        "chosen_team",
        "confidence",
        "threshold",
        "scorer",
        "model_version",
        "created_at",
    )
    list_filter = ("decision", "scorer", "model_version")
    raw_id_fields = ("ticket",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Prediction._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Correction)
class CorrectionAdmin(admin.ModelAdmin):
    list_display = ("ticket", "kind", "from_team", "to_team", "agent", "source", "created_at")
    list_filter = ("kind", "source")
    raw_id_fields = ("ticket", "prediction")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
