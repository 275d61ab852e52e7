"""Tags on the agent dashboard: what a ticket's tags are, as agents see them, and the queue's tag filter,
urgency sort and row chips, registered on triage's plug-in points (``triage.extensions``).

A tag is *set* on a ticket when an agent's latest label for it says ``add``, or, without a label, when
its latest prediction is set (calibrated probability at or above the tag's threshold; for a single-label
set also its best tag). Tags below their threshold are listed with their confidence but not as set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from django.db import transaction
from django.db.models import Case, FloatField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.template.loader import render_to_string

from triage import extensions

from .models import Tag, TagLabel, TagPrediction, TagSet
from .services import record_tag_label
from .signals import tags_changed

# The tag whose probability orders a queue by urgency ("most urgent first").
URGENT_TAG = ("urgency", "high")


def alerting(tag: Tag) -> bool:
    """Tags automations hear about when they become set (``ticket.tagged``): the ones admins switched
    ``notify`` on for (the demo ships urgency/high and security), whatever their slug."""
    return tag.notify


@dataclass
class TagState:
    tag: Tag
    probability: float | None  # the latest calibrated probability; None when never scored
    predicted_set: bool
    label: str | None  # the latest agent label's action, if any
    prediction_id: int | None = None

    @property
    def is_set(self) -> bool:
        return shown_as_set(self.label, self.predicted_set)

    @property
    def by_agent(self) -> bool:
        return self.label is not None

    @property
    def key(self) -> str:
        return tag_key(self.tag)

    @property
    def name(self) -> str:
        return self.tag.name

    @property
    def set_name(self) -> str:
        return self.tag.tag_set.name


def shown_as_set(label: str | None, predicted_set: bool) -> bool:
    """Whether a tag is set on a ticket: the agent's latest label (its action) if any, else the prediction."""
    return label == TagLabel.Action.ADD if label else predicted_set


def tag_key(tag: Tag) -> str:
    """``urgency/high``: how a tag is named in a queue filter and in the API."""
    return f"{tag.tag_set.slug}/{tag.slug}"


def find_tag(key: str) -> Tag | None:
    """The tag a ``set/tag`` key names (archived ones too: callers decide what to do with them)."""
    set_slug, _, slug = key.partition("/")
    if not set_slug or not slug:
        return None
    return Tag.objects.select_related("tag_set").filter(tag_set__slug=set_slug, slug__iexact=slug).first()


def serialize_states(states: dict[int, TagState]) -> list[dict[str, Any]]:
    """A ticket's tags for the API: every scored or labelled tag, with its probability and set flag."""
    rows = []
    for s in states.values():
        # The set read once per row, not four times: a page of the API list serialises 750 rows.
        tag = s.tag
        set_slug = tag.tag_set.slug
        row = {
            "tag": f"{set_slug}/{tag.slug}",
            "tag_set": set_slug,
            "name": tag.name,
            "probability": s.probability,
            "is_set": s.is_set,
            "by_agent": s.by_agent,
        }
        rows.append(((set_slug, tag.slug), row))
    rows.sort(key=itemgetter(0))
    return [row for _key, row in rows]


def tag_states(ticket_ids: Iterable[int]) -> dict[int, dict[int, TagState]]:
    """Each ticket's tags (current tags of active sets) with their latest prediction and label: three queries.

    The shown tags are read once and shared by every state; predictions and labels come as plain
    values. A page of 50 tickets scored on 15 tags is 750 predictions: as model instances with their
    tag and set joined they cost ~150 ms of CPU, as values a few (bench/bench_api.py).
    """
    ids = list(ticket_ids)
    states: dict[int, dict[int, TagState]] = {pk: {} for pk in ids}
    if not ids:
        return states
    tags = {
        tag.pk: tag
        for tag in Tag.objects.filter(archived_at__isnull=True, tag_set__active=True).select_related("tag_set")
    }
    if not tags:
        return states
    predictions = (
        TagPrediction.objects.filter(ticket_id__in=ids, tag_id__in=tags)
        .latest_per_ticket_and_tag()
        .values_list("ticket_id", "tag_id", "probability", "is_set", "pk")
    )
    for ticket_id, tag_id, probability, is_set, pk in predictions:
        states[ticket_id][tag_id] = TagState(tags[tag_id], probability, is_set, None, pk)
    labels = (
        TagLabel.objects.filter(ticket_id__in=ids, tag_id__in=tags)
        .latest_per_ticket_and_tag()
        .values_list("ticket_id", "tag_id", "action")
    )
    for ticket_id, tag_id, action in labels:
        state = states[ticket_id].setdefault(tag_id, TagState(tags[tag_id], None, False, None))
        state.label = action
    return states


def ticket_tag_groups(ticket: Any) -> list[dict[str, Any]]:
    """The ticket page's tags: every current tag of every active set, grouped by set, set ones marked."""
    states = tag_states([ticket.pk])[ticket.pk]
    groups = []
    for tag_set in TagSet.objects.scorable():
        tags = [states.get(tag.pk) or TagState(tag, None, False, None) for tag in tag_set.tags.all()]
        for state in tags:
            state.tag.tag_set = tag_set  # the set is known; no query per tag for its name
        groups.append({"set": tag_set, "tags": tags})
    return groups


def set_tags(states: dict[int, TagState]) -> list[TagState]:
    return sorted((s for s in states.values() if s.is_set), key=lambda s: (s.set_name, s.name))


@transaction.atomic
def change_tag(ticket: Any, tag: Tag, action: str, *, agent, source: str) -> list[TagLabel]:
    """Record an agent's add or remove. Adding a tag of a single-label set also removes the set's tag
    that is set now, so that the labels say the same as what the agent sees (one tag per set)."""
    labels = []
    if action == TagLabel.Action.ADD and tag.tag_set.single_label:
        states = tag_states([ticket.pk])[ticket.pk]
        for other in states.values():
            if other.tag.tag_set_id == tag.tag_set_id and other.tag.pk != tag.pk and other.is_set:
                labels.append(record_tag_label(ticket, other.tag, TagLabel.Action.REMOVE, agent=agent, source=source))
    labels.append(record_tag_label(ticket, tag, action, agent=agent, source=source))
    transaction.on_commit(lambda: tags_changed.send_robust(sender=change_tag, ticket_ids=[ticket.pk]))
    return labels


# --- Queue plug-ins ----------------------------------------------------------------------------------------


def _latest(model: type, field: str, tag: Tag) -> Subquery:
    rows = model.objects.filter(ticket=OuterRef("pk"), tag=tag).order_by("-created_at", "-id")
    return Subquery(rows.values(field)[:1])


def filter_by_tag(tickets: QuerySet, key: str) -> QuerySet:
    """Tickets on which the tag ``key`` (``set/tag``) is set; an unknown tag matches none."""
    tag = find_tag(key)
    if tag is None:
        return tickets.none()
    tickets = tickets.annotate(
        _tag_label=_latest(TagLabel, "action", tag), _tag_predicted=_latest(TagPrediction, "is_set", tag)
    )
    return tickets.filter(Q(_tag_label=TagLabel.Action.ADD) | Q(_tag_label__isnull=True, _tag_predicted=True))


def annotate_urgency(tickets: QuerySet) -> QuerySet:
    """``urgency``: 1 or 0 when an agent added or removed the high-urgency tag, else its probability."""
    tag = Tag.objects.filter(tag_set__slug=URGENT_TAG[0], slug=URGENT_TAG[1]).first()
    if tag is None:
        return tickets.annotate(urgency=Value(None, output_field=FloatField()))
    tickets = tickets.annotate(_urgent_label=_latest(TagLabel, "action", tag))
    return tickets.annotate(
        urgency=Case(
            When(_urgent_label=TagLabel.Action.ADD, then=Value(1.0)),
            When(_urgent_label=TagLabel.Action.REMOVE, then=Value(0.0)),
            default=_latest(TagPrediction, "probability", tag),
            output_field=FloatField(),
        )
    )


def tag_filter_choices() -> list[tuple[str, str]]:
    tags = Tag.objects.current().filter(tag_set__active=True).select_related("tag_set")
    return [(tag_key(tag), f"{tag.tag_set.name}: {tag.name}") for tag in tags.order_by("tag_set__name", "name")]


def decorate_rows(tickets: Sequence[Any]) -> None:
    """``ticket.shown_tags``: the set tags of each ticket on a queue page (two queries for the page)."""
    states = tag_states(t.pk for t in tickets)
    for ticket in tickets:
        ticket.shown_tags = set_tags(states[ticket.pk])


def ticket_panel(request: Any, ticket: Any, *, error: str = "") -> str:
    from triage.queues import QueueParams

    context = {
        "ticket": ticket,
        "error": error,
        "groups": ticket_tag_groups(ticket),
        "queue_query": QueueParams.from_query(request.GET).as_query(),
    }
    return render_to_string("tags/_ticket_tags.html", context, request=request)


def register() -> None:
    extensions.QUEUE_FILTERS["tag"] = filter_by_tag
    extensions.QUEUE_FILTER_CHOICES["tag"] = tag_filter_choices
    extensions.QUEUE_SORTS["urgency"] = extensions.QueueSort("Urgency", annotate_urgency)
    if decorate_rows not in extensions.QUEUE_ROWS:
        extensions.QUEUE_ROWS.append(decorate_rows)
    if ticket_panel not in extensions.TICKET_PANELS:
        extensions.TICKET_PANELS.append(ticket_panel)
