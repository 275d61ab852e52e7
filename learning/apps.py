from functools import partial

from django.apps import AppConfig


class LearningConfig(AppConfig):
    """The learning loop: labels, retraining, evaluation, tuning and report pages (above triage and mlops)."""

    name = "learning"
    verbose_name = "Learning loop"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from triage.models import Team

        post_save.connect(_team_saved, sender=Team, dispatch_uid="learning.selftrain.team_saved")


def _team_saved(sender, instance, created: bool, **kwargs) -> None:
    """Drift: after the team's transaction commits, see whether the models must follow (``learning.selftrain``)."""
    from django.db import transaction

    from .selftrain import on_team_saved

    # robust: a failure here is logged and must never undo or fail the admin's saved change.
    transaction.on_commit(partial(on_team_saved, created=created), robust=True)
