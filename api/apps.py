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
