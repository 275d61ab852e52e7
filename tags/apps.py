from django.apps import AppConfig


class TagsConfig(AppConfig):
    name = "tags"
    verbose_name = "Ticket tags"

    def ready(self) -> None:
        from . import dashboard, hooks  # noqa: F401  (hooks: scores tags in the routing micro-batch)

        dashboard.register()  # tags on triage's queues and ticket page (triage.extensions)
