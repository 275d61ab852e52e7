"""Tag sets, their tags, the tags predicted for tickets and the labels agents give them.

A ``TagSet`` is defined by admins the way teams are: single-label (exactly one of its tags fits a
ticket: urgency low / normal / high) or multi-label (each tag on its own: security, data loss ...).
Its ``method`` says what scores it: the zero-shot scorers (``zero_shot``) or the language detector
(``language``, whose tag slugs are ISO 639-1 codes).

History is kept, never rewritten: a tag that predictions or labels reference cannot be deleted
(``PROTECT``); it is archived instead (``archived_at``), and its name stays taken in its set. A tag
set with labels recorded keeps its kind (``tags.services.set_tag_set_kind`` refuses the switch).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower

from triage.models import SettingChange

# Calibrated probability at or above which a tag is shown as set, until a threshold is calibrated.
DEFAULT_TAG_THRESHOLD = 0.5


def _unit_interval(field: str, name: str) -> models.CheckConstraint:
    return models.CheckConstraint(condition=models.Q(**{f"{field}__gte": 0.0, f"{field}__lte": 1.0}), name=name)


class TagSetQuerySet(models.QuerySet):
    def scorable(self) -> TagSetQuerySet:
        """Active sets with their active tags, in a stable order (what ``score_tags`` scores)."""
        active_tags = Tag.objects.filter(archived_at__isnull=True).order_by("slug")
        return self.filter(active=True).order_by("slug").prefetch_related(models.Prefetch("tags", active_tags))


class TagSet(models.Model):
    """A family of tags scored together: urgency, sentiment, language, topics."""

    class Kind(models.TextChoices):
        SINGLE = "single", "Single-label (exactly one tag)"
        MULTI = "multi", "Multi-label (each tag on its own)"

    class Method(models.TextChoices):
        ZERO_SHOT = "zero_shot", "Zero-shot scorer (NLI, or embedding with calibration)"
        LANGUAGE = "language", "Language detector (tag slugs are ISO 639-1 codes)"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True, help_text="What this tag set says about a ticket.")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.MULTI)
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.ZERO_SHOT)
    active = models.BooleanField(default=True, help_text="Inactive sets are not scored; their history stays.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TagSetQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(kind__in=["single", "multi"]), name="tagset_kind_known"),
            models.CheckConstraint(
                condition=models.Q(method__in=["zero_shot", "language"]), name="tagset_method_known"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def single_label(self) -> bool:
        return self.kind == self.Kind.SINGLE

    def has_labels(self) -> bool:
        return TagLabel.objects.filter(tag__tag_set=self).exists()


class TagQuerySet(models.QuerySet):
    def current(self) -> TagQuerySet:
        """Tags not archived."""
        return self.filter(archived_at__isnull=True)


class Tag(models.Model):
    """One tag of a set. ``calibration`` maps a scorer name to its fitted calibration (``tags.calibration``)."""

    tag_set = models.ForeignKey(TagSet, on_delete=models.PROTECT, related_name="tags")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, help_text="What this tag means, in an admin's words.")
    hypothesis = models.CharField(
        max_length=500,
        blank=True,
        help_text='NLI hypothesis for this tag; empty uses the template, e.g. "This ticket is about {}."',
    )
    threshold = models.FloatField(
        default=DEFAULT_TAG_THRESHOLD,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Calibrated probability at or above which the tag is shown as set.",
    )
    notify = models.BooleanField(
        default=False,
        help_text="Automations hear when this tag becomes set on a ticket (the ticket.tagged webhook).",
    )
    # {"<scorer name>": {"method": "logistic", "a": ..., "b": ..., "source": "dev" | "labels", "n": ...}}
    calibration = models.JSONField(default=dict, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True, help_text="Set when the tag was removed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TagQuerySet.as_manager()

    class Meta:
        ordering = ["tag_set", "name"]
        constraints = [
            # Archived tags keep their name: a label on the old tag must not read as the new one.
            models.UniqueConstraint("tag_set", Lower("slug"), name="tag_slug_unique_in_set"),
            models.UniqueConstraint("tag_set", Lower("name"), name="tag_name_unique_in_set"),
            _unit_interval("threshold", "tag_threshold_in_unit_interval"),
        ]

    def __str__(self) -> str:
        return f"{self.tag_set.name}: {self.name}"

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


class TagChange(SettingChange):
    """Audit trail of tag set and tag settings: kind, threshold, notify, calibration, archive, restore."""

    tag_set = models.ForeignKey(TagSet, on_delete=models.CASCADE, related_name="changes")
    tag = models.ForeignKey(Tag, null=True, blank=True, on_delete=models.CASCADE, related_name="changes")

    class Meta(SettingChange.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.tag_set_id}/{self.tag_id or '-'} {self.field}: {self.before} → {self.after}"


class TagPredictionQuerySet(models.QuerySet):
    def latest_per_ticket_and_tag(self) -> TagPredictionQuerySet:
        """Each (ticket, tag)'s newest prediction only."""
        return self.order_by("ticket_id", "tag_id", "-created_at", "-id").distinct("ticket_id", "tag_id")

    def set(self) -> TagPredictionQuerySet:
        return self.filter(is_set=True)


class TagPrediction(models.Model):
    """A tag's calibrated probability for a ticket, by one scorer version. Never edited after it is stored.

    ``probability`` is calibrated (``calibration`` says by what); ``raw_score`` is what the scorer
    returned before it (a cosine, a logit) and is kept for audit and refitting, never shown as a
    probability. ``is_set``: at or above ``threshold`` (for a single-label set, also its best tag).
    """

    ticket = models.ForeignKey("triage.Ticket", on_delete=models.CASCADE, related_name="tag_predictions")
    tag = models.ForeignKey(Tag, on_delete=models.PROTECT, related_name="predictions")
    probability = models.FloatField()
    raw_score = models.FloatField()
    threshold = models.FloatField(help_text="The tag's threshold when this was scored.")
    is_set = models.BooleanField()
    scorer = models.CharField(max_length=32, help_text="nli, embedding, language, setfit ...")
    scorer_version = models.CharField(max_length=300, help_text="Model and calibration that produced it.")
    calibration = models.CharField(max_length=16, help_text="native, dev, labels or none.")
    model_version = models.ForeignKey(
        "mlops.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="tag_predictions"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = TagPredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A redelivered scoring message finds the row there instead of storing a second one.
            models.UniqueConstraint(fields=["ticket", "tag", "scorer_version"], name="one_tag_prediction_per_version"),
            _unit_interval("probability", "tag_probability_in_unit_interval"),
            _unit_interval("threshold", "tag_prediction_threshold_in_unit_interval"),
        ]
        indexes = [models.Index(fields=["tag", "is_set"])]

    def __str__(self) -> str:
        return f"#{self.ticket_id} {self.tag_id} {self.probability:.2f}"


class TagLabelQuerySet(models.QuerySet):
    def latest_per_ticket_and_tag(self) -> TagLabelQuerySet:
        """Each (ticket, tag)'s latest label: the one that counts; earlier ones are the audit trail."""
        return self.order_by("ticket_id", "tag_id", "-created_at", "-id").distinct("ticket_id", "tag_id")


class TagLabel(models.Model):
    """An agent's answer about one tag of one ticket: it is there (``add``) or it is not (``remove``)."""

    class Action(models.TextChoices):
        ADD = "add", "Added"
        REMOVE = "remove", "Removed"

    ticket = models.ForeignKey("triage.Ticket", on_delete=models.CASCADE, related_name="tag_labels")
    tag = models.ForeignKey(Tag, on_delete=models.PROTECT, related_name="labels")
    action = models.CharField(max_length=8, choices=Action.choices)
    prediction = models.ForeignKey(
        TagPrediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels"
    )
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=16, default="dashboard", help_text="dashboard, api or import.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = TagLabelQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(action__in=["add", "remove"]), name="tag_label_action_known")
        ]

    def __str__(self) -> str:
        return f"#{self.ticket_id} {self.action} {self.tag_id}"
