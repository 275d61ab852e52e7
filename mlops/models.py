"""Model registry: every scorer that ever produced a prediction is a ModelVersion row."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

# What a version is for: routing tickets to teams, or one tag set's tags (``tags:<tag set slug>``).
ROUTING_TASK = "routing"


def tag_task(tag_set_slug: str) -> str:
    return f"tags:{tag_set_slug}"


class ModelVersionQuerySet(models.QuerySet):
    def champion(self, task: str = ROUTING_TASK) -> ModelVersion | None:
        """The version that serves ``task`` (routing by default; at most one per task: a unique constraint),
        or None before the first."""
        return self.filter(status=ModelVersion.Status.CHAMPION, task=task).first()


class ModelVersion(models.Model):
    """One servable model: a zero-shot scorer configuration or a trained SetFit model, for routing or for
    one tag set's tags (``task``).

    Predictions reference the version that produced them. Exactly one version per task is the champion
    (``status == CHAMPION``) at a time; the routing champion routes new tickets, a tag set's champion
    scores its tags (before a tag set has one, the zero-shot tag scorer does).
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        TRAINING = "training", "Training"
        CHAMPION = "champion", "Champion"
        RETIRED = "retired", "Retired"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"

    scorer = models.CharField(
        max_length=32, help_text="Scorer name: nli, embedding, cross-encoder, ensemble, setfit, self-trained."
    )
    model_ref = models.CharField(max_length=500, help_text="Hub id, packaged model or path of the weights.")
    version = models.CharField(max_length=64, help_text="Human-readable version label.")
    task = models.CharField(
        max_length=80, default=ROUTING_TASK, help_text='What it serves: "routing" or "tags:<tag set slug>".'
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    artifact_path = models.CharField(max_length=500, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="Scorer settings (template, head, ...).")
    # Calibration fitted for this version: {"method": "temperature", "temperature": 1.7, ...}
    calibration = models.JSONField(default=dict, blank=True)
    # Per-class thresholds fitted for this version: {"<team slug>": 0.83, ...}
    thresholds = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    label_counts = models.JSONField(default=dict, blank=True)
    data_hash = models.CharField(max_length=64, blank=True)
    training_seconds = models.FloatField(null=True, blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger = models.CharField(max_length=32, blank=True, help_text="manual, threshold, schedule, bootstrap.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["task"], condition=models.Q(status="champion"), name="one_champion_model_version_per_task"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scorer}:{self.version}"

    def files_present(self) -> bool:
        """Whether a trained version's files are still on disk (the file each trainer writes last)."""
        last = LAST_FILE_WRITTEN.get(self.scorer, "model_head.pkl")
        return bool(self.artifact_path) and (Path(self.artifact_path) / last).exists()


# The file a trained version's directory holds once it is complete: SetFit's head, the self-trained head.
LAST_FILE_WRITTEN = {"setfit": "model_head.pkl", "self-trained": "head.npz"}


class TrainingRun(models.Model):
    """Progress and outcome of one retraining job, shown to admins while it runs."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    model_version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="training_run")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    progress = models.JSONField(default=dict, blank=True, help_text="step, total_steps, epoch, eta_seconds.")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # Outbox (learning.runs): when the task was last handed to the broker, and how often. A run queued
    # while the broker was down is sent by the sweeper when it is back.
    sent_at = models.DateTimeField(null=True, blank=True)
    sends = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Training run {self.pk} ({self.state})"


class ScorerHealth(models.Model):
    """What a worker found when it loaded the routing scorer, so the web side can say it.

    One row per (host, routing setting, configured model). When the configured scorer cannot load,
    ``ok`` is False and ``message`` reads "NLI model X could not be loaded (reason); routing with
    ensemble": the admin and the dashboard show it.
    """

    host = models.CharField(max_length=200)
    requested = models.CharField(max_length=32, help_text="The routing scorer setting: auto, nli, embedding, ...")
    model_ref = models.CharField(max_length=500, help_text="The model the setting asked for first.")
    active_scorer = models.CharField(max_length=32, help_text="The scorer that routes.")
    active_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ok = models.BooleanField(help_text="The requested scorer loaded.")
    message = models.TextField(blank=True)
    reported_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-reported_at"]
        verbose_name_plural = "scorer health"
        constraints = [
            models.UniqueConstraint(fields=["host", "requested", "model_ref"], name="one_health_row_per_worker_setting")
        ]

    def __str__(self) -> str:
        return f"{self.host}: {self.message or self.active_scorer}"
