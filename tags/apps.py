from django.apps import AppConfig


class TagsConfig(AppConfig):
    name = "tags"
    verbose_name = "Ticket tags"

    def ready(self) -> None:
        from mlops.inference.warm import WARMERS

        # hooks: scores tags in the routing micro-batch; tasks: registers tagging as per-ticket work.
        from . import dashboard, hooks, scoring, tasks  # noqa: F401

        dashboard.register()  # tags on triage's queues and ticket page (triage.extensions)
        if scoring.warm_tag_scorers not in WARMERS:  # ready() runs again when a test re-populates apps
            WARMERS.append(scoring.warm_tag_scorers)
