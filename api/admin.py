from __future__ import annotations

from django.contrib import admin, messages
from django.db import models

from .models import ApiToken, IdempotencyKey, WebhookDelivery, WebhookEndpoint
from .webhooks import redeliver


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "scope", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scope", "revoked_at"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    fields = ["user", "name", "scope", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # A token's owner and scope are fixed once issued: issue a new token instead.
        return [*self.readonly_fields, "user", "scope"] if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        token, secret = ApiToken.issue(obj.user, name=obj.name, scope=obj.scope)
        obj.pk = token.pk
        messages.warning(request, f"Token for {obj.user}: {secret} — copy it now; it cannot be shown again.")

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            token.revoke()


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "events", "active", "created_at"]
    list_filter = ["active"]
    # A URL typed without a scheme is taken as https (Django 6's default; 5.2 warns unless it is said).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event", "endpoint", "state", "attempts", "status_code", "next_retry_at", "delivered_at"]
    list_filter = ["state", "event", "endpoint"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["send_again"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Send the selected deliveries again")
    def send_again(self, request, queryset):
        for delivery in queryset:
            redeliver(delivery)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ["key", "user", "ticket", "response_status", "created_at"]
    search_fields = ["key", "user__username"]
    readonly_fields = [f.name for f in IdempotencyKey._meta.fields]

    def has_add_permission(self, request):
        return False
