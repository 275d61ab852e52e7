from django.apps import AppConfig


class LearningConfig(AppConfig):
    """The learning loop: labels, retraining, evaluation, tuning and report pages (above triage and mlops)."""

    name = "learning"
    verbose_name = "Learning loop"
