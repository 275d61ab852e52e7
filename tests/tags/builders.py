"""Tag sets and tag predictions as the scorer stores them, so that page and API tests need no model."""

from __future__ import annotations

from tags.models import Tag, TagPrediction, TagSet
from tags.services import create_tag_set
from triage.models import Ticket


def make_tag_sets() -> dict[str, TagSet]:
    """Urgency (single-label) and topics (multi-label), as in the demo: high urgency and security notify."""
    urgency = create_tag_set(
        "Urgency", kind="single", tags=[{"name": "low"}, {"name": "normal"}, {"name": "high", "notify": True}]
    )
    topics = create_tag_set("Topics", kind="multi", tags=[{"name": "security", "notify": True}, {"name": "outage"}])
    return {"urgency": urgency, "topics": topics}


def tag(key: str) -> Tag:
    set_slug, slug = key.split("/")
    return Tag.objects.select_related("tag_set").get(tag_set__slug=set_slug, slug=slug)


def predict_tag(
    ticket: Ticket, tag: Tag, probability: float = 0.8, version: str = "test", model_version=None
) -> TagPrediction:
    """Store a tag's prediction as the scorer does: set at or above the tag's threshold (``model_version``:
    the set's trained head that scored it, as ``score_tags`` records it)."""
    return TagPrediction.objects.create(
        ticket=ticket,
        tag=tag,
        probability=probability,
        raw_score=0.41,
        threshold=tag.threshold,
        is_set=probability >= tag.threshold,
        scorer="embedding",
        scorer_version=version,
        calibration="dev",
        model_version=model_version,
    )


def predict_tags(
    ticket: Ticket, probabilities: dict[str, float], version: str = "test", model_version=None
) -> list[TagPrediction]:
    """Store one scoring of ``ticket``: ``{"urgency/high": 0.8, ...}``."""
    return [
        predict_tag(ticket, tag(key), probability, version, model_version) for key, probability in probabilities.items()
    ]
