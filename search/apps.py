from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Knowledge base"

    def ready(self) -> None:
        from . import tasks  # noqa: F401  (registers suggestions as per-ticket work, see triage.work)
