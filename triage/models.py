"""Tickets, the teams they are routed to, routing decisions and the labels agents give them."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

SUBJECT_MAX = 300
BODY_MAX = 50_000


class Team(models.Model):
    """A routing target. Admins write its name, description and hypothesis; the router reads them."""

    class Mode(models.TextChoices):
        AUTO = "auto", "Auto-route"
        SUGGEST = "suggest", "Suggest only"
        OFF = "off", "Off"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True, help_text="What this team handles, in an admin's words.")
    examples = models.JSONField(
        default=list,
        blank=True,
        help_text="A few example tickets (texts) this team receives; they pull the router towards them.",
    )
    hypothesis = models.CharField(
        max_length=500,
        blank=True,
        help_text='NLI hypothesis for this team; empty uses the template, e.g. "This ticket is about {}."',
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SUGGEST)
    threshold = models.FloatField(
        default=0.9,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Calibrated confidence at or above which a ticket is auto-routed to this team.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(threshold__gte=0.0, threshold__lte=1.0), name="team_threshold_in_unit_interval"
            )
        ]

    def __str__(self) -> str:
        return self.name


class SettingChange(models.Model):
    """What every audit row of a settings change records: who, when, which field, before and after, why.

    Abstract: each audited thing keeps its own table with a key to what changed (``TeamChange`` here,
    ``tags.TagChange`` above), and one definition of the fields, their lengths and their order.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    field = models.CharField(max_length=32)
    before = models.CharField(max_length=500, blank=True)
    after = models.CharField(max_length=500, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class TeamChange(SettingChange):
    """Audit trail of every change to a team's routing settings (mode, threshold, ...)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="changes")

    class Meta(SettingChange.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.field} of team {self.team_id}"


class Ticket(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        ROUTING = "routing", "Routing"
        ROUTED = "routed", "Routed"
        NEEDS_TRIAGE = "needs_triage", "Needs triage"
        RESOLVED = "resolved", "Resolved"

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEB = "web", "Web form"
        CHAT = "chat", "Chat"
        PHONE = "phone", "Phone"
        API = "api", "API"

    external_id = models.CharField(max_length=200, unique=True, null=True, blank=True)
    subject = models.CharField(max_length=SUBJECT_MAX)
    body = models.TextField()
    requester = models.CharField(max_length=254, blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.WEB)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW, db_index=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_tickets"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    routing_attempts = models.PositiveIntegerField(default=0)
    routing_started_at = models.DateTimeField(null=True, blank=True)
    routing_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            GinIndex(SearchVector("subject", "body", config="english"), name="ticket_fulltext"),
            models.Index(fields=["team", "status"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"

    @property
    def text(self) -> str:
        """What the router and the search read: subject and body together."""
        return f"{self.subject}\n\n{self.body}".strip()


# Newest first, ties (same timestamp) broken by id: "the latest" of a ticket is one row, always the same.
NEWEST_FIRST = ("-created_at", "-id")


def best_teams(scores: dict[str, float], k: int) -> list[tuple[str, float]]:
    """The k best of a prediction's ``scores`` as (slug, score), best first (``Prediction.top``)."""
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)[:k]


class LatestQuerySet(models.QuerySet):
    def latest(self, *fields):
        """Django's ``latest()``, by creation time then id unless told otherwise (``DoesNotExist`` when empty)."""
        return super().latest(*(fields or ("created_at", "id")))

    def newest_first(self):
        """Latest row first: ``.newest_first().first()`` is the latest or None; also for subqueries."""
        return self.order_by(*NEWEST_FIRST)

    def latest_per_ticket(self):
        """Each ticket's latest row only (one per ticket, ordered by ticket id)."""
        return self.order_by("ticket_id", *NEWEST_FIRST).distinct("ticket_id")


class PredictionQuerySet(LatestQuerySet):
    pass


class CorrectionQuerySet(LatestQuerySet):
    """A ticket's latest label is the one that counts; earlier ones are the audit trail."""

    def slug_per_ticket(self) -> dict[int, str]:
        """Ticket id → team slug of its latest label."""
        return dict(self.latest_per_ticket().values_list("ticket_id", "to_team_slug"))


class Prediction(models.Model):
    """One routing decision for a ticket by one model version. Never edited after it is stored."""

    class Decision(models.TextChoices):
        AUTO_ROUTED = "auto_routed", "Auto-routed"
        SUGGESTED = "suggested", "Suggested"
        ABSTAINED = "abstained", "Needs triage"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey("mlops.ModelVersion", on_delete=models.PROTECT, related_name="predictions")
    scorer = models.CharField(max_length=32)
    # Calibrated probabilities per team slug, and the scorer's raw scores before calibration.
    scores = models.JSONField(default=dict)
    raw_scores = models.JSONField(default=dict)
    chosen_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    confidence = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True, help_text="Threshold in force when this was decided.")
    decision = models.CharField(max_length=16, choices=Decision.choices)
    latency_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["ticket", "model_version"], name="one_prediction_per_ticket_and_version")
        ]

    def __str__(self) -> str:
        return f"Prediction {self.pk} for ticket {self.ticket_id}"

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The k best teams by calibrated score, as (slug, score), best first."""
        return best_teams(self.scores, k)


class Correction(models.Model):
    """A label from a person: an acceptance (to_team == from_team), a correction or an imported label.

    The latest label of a ticket wins for training; earlier ones stay as the audit trail.
    """

    class Kind(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        CORRECTED = "corrected", "Corrected"
        REASSIGNED = "reassigned", "Reassigned"
        IMPORTED = "imported", "Imported label"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="corrections")
    prediction = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_version = models.ForeignKey(
        "mlops.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    from_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    to_team = models.ForeignKey(Team, null=True, on_delete=models.SET_NULL, related_name="labels")
    # Kept so that a label survives its team being renamed or deleted (handled explicitly in training).
    to_team_slug = models.CharField(max_length=64)
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=16, default="dashboard", help_text="dashboard, api or import.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = CorrectionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Correction {self.pk} of ticket {self.ticket_id}"


class TicketJob(models.Model):
    """One piece of per-ticket work (routing, article suggestions, ...) and its delivery to the broker.

    A transactional outbox: the row is written in the ticket's transaction, so the work is recorded even
    when the broker is down; ``triage.work`` sends it after commit and the sweeper sends what was never
    sent or is overdue. The task marks it done. A row is reopened (not duplicated) when the same work is
    asked for again, e.g. refreshing a ticket's suggestions.
    """

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="jobs")
    # A name registered in ``triage.work`` ("route", "suggest", ...).
    kind = models.CharField(max_length=32)
    requested_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True, help_text="Last time a message was sent for it.")
    due_at = models.DateTimeField(null=True, blank=True, help_text="Sent again after this if not done by then.")
    sends = models.PositiveIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # A batching task's claim (``triage.work.claim_jobs``): which run took the job, and until when no
    # other run may. A run that dies leaves the lease to expire; the sweeper then re-sends the job.
    claim = models.CharField(max_length=64, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ticket", "kind"], name="one_job_per_ticket_and_kind")]
        indexes = [
            # The sweeper reads only open jobs; done ones stay as the ticket's record.
            models.Index(fields=["kind", "due_at"], name="open_ticket_jobs", condition=models.Q(done_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.ticket_id}"
