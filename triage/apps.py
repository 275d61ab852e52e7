from django.apps import AppConfig


class TriageConfig(AppConfig):
    name = "triage"
    verbose_name = "Tickets and routing"

    def ready(self) -> None:
        from mlops.inference.warm import WARMERS

        from . import routing, tasks  # noqa: F401  (tasks registers routing as per-ticket work, see triage.work)

        # Before mlops' own warmer of a trained champion, as when the routing warmer lived there.
        WARMERS.insert(0, routing.warm_routing)
