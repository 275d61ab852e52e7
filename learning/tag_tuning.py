"""Per-tag thresholds on the tuning page: each tag's recorded predictions and agents' labels read out of
the database as one ``learning.tuning.ClassOutcomes``, so that a tag's what-if, precision-recall curve and
suggested threshold are the team ones, computed by the same functions.

Which rows count, for a tag ``t`` of a tag set ``S`` (also on the page, under "definitions"):

* **window**: the last N tickets (by creation) with a prediction of a current tag of ``S``; of each,
  the latest prediction of each tag. With a model version chosen (the page's filter, as for teams):
  only that version's predictions count, so the window is the tickets it scored for ``S`` (a tag set's
  trained head, ``TagPrediction.model_version``; a version that never scored ``S`` leaves it empty).
* **label** of (ticket, ``t``): the latest ``TagLabel``: ``add`` says ``t`` fits, ``remove`` that it
  does not. In a single-label set an agent's latest ``add`` of another tag of ``S`` also says ``t``
  does not fit (one tag per set): that is what the agent confirmed.
* **candidates** (``predicted`` of the what-if): in a multi-label set every ticket of the window
  scored for ``t``; in a single-label set the tickets whose best tag of ``S`` is ``t``, since only the
  best tag can be set (``tags.scoring.SetScores.is_set``). *Set at θ*: a candidate with probability ≥ θ.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from learning.quality import Reliability, reliability
from learning.reports import DEFAULT_WINDOW
from learning.tuning import ClassOutcomes
from mlops.models import ModelVersion
from tags.models import Tag, TagLabel, TagPrediction, TagSet
from triage.models import Ticket


@dataclass(frozen=True)
class TagOutcomes:
    """A tag's candidates (``outcomes``) and the reliability of its probability on every labeled ticket."""

    tag: Tag
    outcomes: ClassOutcomes
    reliability: Reliability


def load_tag_set_outcomes(
    tag_set: TagSet, *, last_n: int | None = DEFAULT_WINDOW, model_version: ModelVersion | None = None
) -> dict[int, TagOutcomes]:
    """Tag id → its ``TagOutcomes`` for every current tag of ``tag_set`` (three queries for the set), from
    ``model_version``'s predictions only when one is given."""
    tags = list(tag_set.tags.current().order_by("name"))
    for tag in tags:
        tag.tag_set = tag_set  # known: no query per tag for its set's name
    tag_ids = [t.pk for t in tags]
    predictions = TagPrediction.objects.filter(tag__in=tag_ids)
    if model_version is not None:
        predictions = predictions.filter(model_version=model_version)
    tickets = Ticket.objects.filter(pk__in=predictions.values("ticket_id")).order_by("-created_at", "-pk").values("pk")
    if last_n:
        tickets = tickets[:last_n]
    ticket_ids = [row["pk"] for row in tickets]
    probability = _latest(predictions, "probability", ticket_ids)
    labels = _latest(TagLabel.objects.filter(tag__in=tag_ids), "action", ticket_ids)
    # A single-label set's best tag is the argmax over its tags in slug order, as the scorer takes it.
    rank = {t.pk: i for i, t in enumerate(sorted(tags, key=lambda t: t.slug))}
    return {tag.pk: _tag_outcomes(tag, tag_set, ticket_ids, probability, labels, rank) for tag in tags}


def _latest(rows: Any, field: str, ticket_ids: list[int]) -> dict[int, dict[int, Any]]:
    """Ticket → tag → ``field`` of its latest row among ``rows`` (a prediction's probability, a label's action)."""
    out: dict[int, dict[int, Any]] = defaultdict(dict)
    rows = rows.filter(ticket_id__in=ticket_ids).latest_per_ticket_and_tag()
    for ticket_id, tag_id, value in rows.values_list("ticket_id", "tag_id", field):
        out[ticket_id][tag_id] = value
    return out


def truth(tag_id: int, labels: dict[int, str], single_label: bool) -> bool | None:
    """What a ticket's latest labels (tag id → action) say of one tag: fits, does not, or nothing."""
    own = labels.get(tag_id)
    if own is not None:
        return own == TagLabel.Action.ADD
    if single_label and any(action == TagLabel.Action.ADD for action in labels.values()):
        return False
    return None


def _tag_outcomes(
    tag: Tag,
    tag_set: TagSet,
    ticket_ids: list[int],
    probability: dict[int, dict[int, float]],
    labels: dict[int, dict[int, str]],
    rank: dict[int, int],
) -> TagOutcomes:
    single_label = tag_set.single_label
    pairs: list[tuple[float, bool | None]] = []
    scored: list[tuple[float, bool]] = []
    positives = 0
    for ticket_id in ticket_ids:
        fits = truth(tag.pk, labels.get(ticket_id, {}), single_label)
        positives += fits is True
        mine = probability.get(ticket_id, {})
        if tag.pk not in mine:
            continue
        if fits is not None:
            scored.append((mine[tag.pk], fits))
        best = max(mine, key=lambda t: (mine[t], -rank[t]))
        if not single_label or best == tag.pk:
            pairs.append((mine[tag.pk], fits))
    outcomes = ClassOutcomes.from_pairs(
        f"{tag_set.slug}/{tag.slug}", pairs, label_count=positives, window=len(ticket_ids), noun="tag"
    )
    return TagOutcomes(tag, outcomes, reliability([p for p, _ in scored], [f for _, f in scored]))


def load_tag_outcomes(
    tag: Tag, *, last_n: int | None = DEFAULT_WINDOW, model_version: ModelVersion | None = None
) -> TagOutcomes:
    """One tag's ``TagOutcomes`` (its set's window)."""
    return load_tag_set_outcomes(tag.tag_set, last_n=last_n, model_version=model_version)[tag.pk]


def load_all_tag_outcomes(
    *, last_n: int | None = DEFAULT_WINDOW, model_version: ModelVersion | None = None
) -> list[TagOutcomes]:
    """Every current tag of every active tag set, sets in name order."""
    out: list[TagOutcomes] = []
    for tag_set in TagSet.objects.filter(active=True).order_by("name"):
        out.extend(load_tag_set_outcomes(tag_set, last_n=last_n, model_version=model_version).values())
    return out
