from django.apps import AppConfig


class TriageConfig(AppConfig):
    name = "triage"
    verbose_name = "Tickets and routing"

    def ready(self) -> None:
        from . import tasks  # noqa: F401  (registers routing as per-ticket work, see triage.work)
