"""Request and response shapes of the API. Writes are validated again, and stored, by services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mlops.models import ModelVersion
from search.deflection import MAX_LIMIT
from search.models import Article, Suggestion
from tags.dashboard import find_tag, serialize_states, tag_key, tag_states
from tags.models import Tag, TagLabel
from triage.models import BODY_MAX, SUBJECT_MAX, Correction, Prediction, Team, Ticket
from triage.services import EXTERNAL_ID_MAX, REQUESTER_MAX

from .fields import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    TeamRefField,
    find_team,
)


class TeamBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "slug", "name"]


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "slug", "name", "description", "mode", "threshold", "active", "updated_at"]


class TeamRoutingSerializer(serializers.ModelSerializer):
    """An admin's view of a team's routing: mode and auto-route threshold."""

    threshold = StrictFloatField(min_value=0.0, max_value=1.0, required=False)
    reason = StrictCharField(write_only=True, required=False, allow_blank=True, max_length=200)

    class Meta:
        model = Team
        fields = ["id", "slug", "name", "mode", "threshold", "reason", "updated_at"]
        read_only_fields = ["id", "slug", "name", "updated_at"]


class TicketCreateSerializer(serializers.Serializer):
    """What an integration sends. Limits mirror ``triage.services.clean_ticket_fields``, which has the last word."""

    subject = StrictCharField(required=False, allow_blank=True, max_length=SUBJECT_MAX, trim_whitespace=False)
    body = StrictCharField(max_length=BODY_MAX, trim_whitespace=False)
    requester = StrictCharField(
        required=False, allow_blank=True, max_length=REQUESTER_MAX, help_text="The requester's e-mail address."
    )
    channel = serializers.ChoiceField(choices=Ticket.Channel.choices, default=Ticket.Channel.API)
    external_id = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=EXTERNAL_ID_MAX,
        help_text="Your system's id. Sending the same id again returns the stored ticket (200), never a duplicate.",
    )
    team = TeamRefField(
        required=False, allow_null=True, help_text="A team label the sender already knows (id or slug), if any."
    )


class PredictionSerializer(serializers.ModelSerializer):
    chosen_team = TeamBriefSerializer(read_only=True, allow_null=True)
    model_version = serializers.SerializerMethodField()
    top = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "decision",
            "chosen_team",
            "confidence",
            "threshold",
            "scores",
            "top",
            "scorer",
            "model_version",
            "latency_ms",
            "created_at",
        ]

    def get_model_version(self, prediction) -> dict:
        version = prediction.model_version
        return {"id": version.pk, "scorer": version.scorer, "version": version.version}

    def get_top(self, prediction) -> list[dict]:
        return [{"team": slug, "score": score} for slug, score in prediction.top(3)]


class ArticleBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Article
        fields = ["id", "title", "url"]


class SuggestionSerializer(serializers.ModelSerializer):
    article = ArticleBriefSerializer(read_only=True)
    passage = serializers.SerializerMethodField()

    class Meta:
        model = Suggestion
        fields = ["rank", "score", "article", "passage"]

    def get_passage(self, suggestion) -> str | None:
        return suggestion.passage_text or (suggestion.passage.text if suggestion.passage_id else None)


class LabelSerializer(serializers.ModelSerializer):
    from_team = TeamBriefSerializer(read_only=True, allow_null=True)
    to_team = TeamBriefSerializer(read_only=True, allow_null=True)
    agent = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Correction
        fields = ["id", "kind", "from_team", "to_team", "to_team_slug", "agent", "source", "created_at"]


class TicketTagSerializer(serializers.Serializer):
    tag = serializers.CharField(help_text="The tag as set/tag, e.g. urgency/high.")
    tag_set = serializers.CharField()
    name = serializers.CharField()
    probability = serializers.FloatField(allow_null=True, help_text="Latest calibrated probability; null if unscored.")
    is_set = serializers.BooleanField(
        help_text="An agent's latest label if any, else the prediction at or above the tag's threshold."
    )
    by_agent = serializers.BooleanField(help_text="Whether an agent's label decides is_set.")


class TicketSerializer(serializers.ModelSerializer):
    team = TeamBriefSerializer(read_only=True, allow_null=True)
    decision = serializers.SerializerMethodField(help_text="Decision of the latest routing, null before routing.")
    tags = serializers.SerializerMethodField(help_text="Scored or labelled tags of active tag sets.")

    class Meta:
        model = Ticket
        fields = [
            "id",
            "external_id",
            "subject",
            "body",
            "requester",
            "channel",
            "status",
            "team",
            "decision",
            "tags",
            "created_at",
            "updated_at",
            "resolved_at",
        ]

    def get_decision(self, ticket) -> str | None:
        return getattr(ticket, "latest_decision", None)

    @extend_schema_field(TicketTagSerializer(many=True))
    def get_tags(self, ticket) -> list[dict]:
        # A list passes the page's states in the context (two queries for the page, none per row).
        states = self.context.get("tag_states")
        if states is None or ticket.pk not in states:
            states = tag_states([ticket.pk])
        return serialize_states(states[ticket.pk])


class TagChangeSerializer(serializers.Serializer):
    tag = serializers.CharField(max_length=130, help_text="The tag as set/tag, e.g. topics/security.")
    action = serializers.ChoiceField(choices=TagLabel.Action.choices)

    def validate_tag(self, value: str) -> Tag:
        tag = find_tag(value)
        if tag is None:
            raise serializers.ValidationError(f"Unknown tag {value!r}; name it as tag_set/tag, e.g. urgency/high.")
        return tag


class TagLabelSerializer(serializers.ModelSerializer):
    tag = serializers.SerializerMethodField()
    agent = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TagLabel
        fields = ["id", "tag", "action", "prediction", "agent", "source", "created_at"]

    def get_tag(self, label) -> str:
        return tag_key(label.tag)


# The columns the detail shows, not whole rows: a suggestion's passage carries its embedding (384 floats
# parsed into an array) and the article its full body three times over; a model version its metrics.
PREDICTION_COLUMNS = (
    *(f.name for f in Prediction._meta.concrete_fields if f.name != "raw_scores"),
    *(f"chosen_team__{name}" for name in ("id", "slug", "name")),
    *(f"model_version__{name}" for name in ("id", "scorer", "version")),
)
SUGGESTION_COLUMNS = (
    "ticket",
    "article",
    "passage",
    "passage_text",
    "score",
    "rank",
    *(f"article__{name}" for name in ("id", "title", "url")),
    *(f"passage__{name}" for name in ("id", "text")),
)


class TicketDetailSerializer(TicketSerializer):
    prediction = serializers.SerializerMethodField()
    suggestions = serializers.SerializerMethodField()
    labels = LabelSerializer(source="corrections", many=True, read_only=True)

    class Meta(TicketSerializer.Meta):
        fields = [*TicketSerializer.Meta.fields, "prediction", "suggestions", "labels"]

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, ticket) -> dict | None:
        prediction = (
            ticket.predictions.select_related("chosen_team", "model_version")
            .only(*PREDICTION_COLUMNS)
            .newest_first()
            .first()
        )
        return PredictionSerializer(prediction).data if prediction is not None else None

    @extend_schema_field(SuggestionSerializer(many=True))
    def get_suggestions(self, ticket) -> list:
        suggestions = (
            ticket.suggestions.select_related("article", "passage").only(*SUGGESTION_COLUMNS).order_by("rank", "pk")
        )
        return SuggestionSerializer(suggestions, many=True).data


class TicketFilterSerializer(serializers.Serializer):
    """Query parameters of the ticket list."""

    team = serializers.CharField(required=False, help_text="Team id or slug.")
    status = serializers.ChoiceField(choices=Ticket.Status.choices, required=False)
    decision = serializers.ChoiceField(
        choices=Prediction.Decision.choices, required=False, help_text="Decision of the latest routing."
    )
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601 date or date-time, inclusive.")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601 date or date-time, exclusive.")

    def validate_team(self, value: str) -> Team:
        team = find_team(value)
        if team is None:
            raise serializers.ValidationError(f"Unknown team {value!r}.")
        return team


class CorrectionSerializer(serializers.Serializer):
    team = TeamRefField(help_text="The right team (id or slug).")


class ArticleFeedbackSerializer(serializers.Serializer):
    article = serializers.PrimaryKeyRelatedField(queryset=Article.objects.all())
    helpful = StrictBooleanField()


class ArticleFeedbackResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ticket = serializers.IntegerField(source="ticket_id")
    article = serializers.IntegerField(source="article_id")
    helpful = serializers.BooleanField()
    rank = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class DeflectRequestSerializer(serializers.Serializer):
    """Text only; its length and content are checked by ``search.deflection.check_text``."""

    text = StrictCharField(
        trim_whitespace=False,
        help_text="What the customer has typed so far (subject and message); at most SEARCH_DEFLECT_MAX_CHARS "
        "characters (4,000 by default).",
    )
    limit = StrictIntegerField(required=False, min_value=1, max_value=MAX_LIMIT, help_text="Articles at most.")


class DeflectionArticleSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="article_id")
    title = serializers.CharField()
    url = serializers.CharField(help_text="The article on the help centre; may be empty.")
    excerpt = serializers.CharField(help_text="The passage that matched, plain text.")
    score = serializers.FloatField(help_text="Fused ranking score (comparable within one answer only).")
    relevance = serializers.FloatField(allow_null=True, help_text="Probability that it helps; null: no model.")


class DeflectionSerializer(serializers.Serializer):
    articles = DeflectionArticleSerializer(many=True, help_text="Those at or above the relevance cutoff.")
    no_article_fits = serializers.BooleanField(
        help_text="True when articles were found but none reached the cutoff: show no suggestion."
    )


class ArticleSerializer(serializers.ModelSerializer):
    """Types are checked here; ``search.services`` validates the rest, sanitises and indexes."""

    team = TeamRefField(required=False, allow_null=True, write_only=True, help_text="Owning team (id or slug).")
    team_detail = TeamBriefSerializer(source="team", read_only=True, allow_null=True)
    title = StrictCharField(max_length=300)
    body = StrictCharField()
    external_id = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=200)
    published = StrictBooleanField(required=False)
    searchable = serializers.BooleanField(read_only=True, help_text="Published and fully indexed.")

    class Meta:
        model = Article
        fields = [
            "id",
            "external_id",
            "url",
            "title",
            "body",
            "body_format",
            "body_html",
            "team",
            "team_detail",
            "published",
            "searchable",
            "index_state",
            "indexed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["body_html", "searchable", "index_state", "indexed_at", "created_at", "updated_at"]
        # Uniqueness is the service's to decide (it upserts by external_id or URL), not the serializer's.
        extra_kwargs = {"url": {"validators": []}}
        validators: list = []


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "scorer",
            "model_ref",
            "version",
            "status",
            "config",
            "calibration",
            "thresholds",
            "metrics",
            "label_counts",
            "trigger",
            "training_seconds",
            "error",
            "created_at",
            "promoted_at",
        ]
