from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "REST API and webhooks"

    def ready(self) -> None:
        from tags.signals import tags_changed
        from triage.signals import ticket_decided

        from . import checks, schema  # noqa: F401  (registers the system check and the schema extension)
        from .webhooks import on_tags_changed, on_ticket_decided

        ticket_decided.connect(on_ticket_decided, dispatch_uid="api.webhooks.on_ticket_decided")
        tags_changed.connect(on_tags_changed, dispatch_uid="api.webhooks.on_tags_changed")
        self.connect_token_cache()

    @staticmethod
    def connect_token_cache() -> None:
        """Cached token lookups are forgotten when a token, user, group or membership changes."""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from .models import ApiToken
        from .token_cache import invalidate

        user = get_user_model()
        for model in (ApiToken, user, Group):
            for signal in (post_save, post_delete):
                signal.connect(invalidate, sender=model, dispatch_uid=f"api.token_cache.{model._meta.label}")
        m2m_changed.connect(invalidate, sender=user.groups.through, dispatch_uid="api.token_cache.groups")
