"""Descriptions an admin can trust: what an edited team description would route, and teams too alike.

* ``preview_description`` — scores the last ``PREVIEW_TICKETS`` tickets with the serving zero-shot
  scorer twice, with today's teams and with the edited description/examples, and says which tickets
  would now go to the team and which would leave it. Loads models: it runs on an inference worker
  (``learning.tasks.preview_team_description_task``), never in a web process.
* ``similar_descriptions`` — pairs of teams whose class vectors (name, description, examples, as the
  embedding scorer builds them) are so close that the router cannot tell them apart.
* ``confused_pairs`` — pairs of teams the router hesitates between on recent tickets (a small margin
  between them as top two), from stored decisions alone: cheap enough for every page view.

Zendesk flags overlapping intents the same two ways (similar training phrases, frequent confusion).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from triage.models import Prediction, Team, Ticket
from triage.routing import routable_teams, team_classes

PREVIEW_TICKETS = 500
PREVIEW_BATCH = 32
# Cosine between two teams' class vectors above which the embedding router cannot separate them well.
# all-MiniLM-L6-v2 puts distinct Banking77 intents mostly below 0.75 and paraphrased ones above 0.85.
SIMILAR_DESCRIPTIONS = 0.85
# A recent ticket "confuses" two teams when they are its top two within this margin (calibrated scores).
CONFUSION_MARGIN = 0.15
# Flag a pair when at least this many recent tickets, and this share of those predicted for either team,
# are confused between them.
CONFUSION_MIN_TICKETS = 5
CONFUSION_MIN_SHARE = 0.25
CONFUSION_WINDOW = 500


def edited_classes(team: Team, description: str, examples: Sequence[str]) -> tuple[list, list]:
    """Today's routable teams as classes, and the same with ``team``'s texts replaced (it joins if off)."""
    teams = routable_teams()
    if team.pk not in {t.pk for t in teams}:
        teams = sorted([*teams, team], key=lambda t: t.slug)
    current = team_classes(teams)
    edited = [
        dataclasses.replace(c, description=description, examples=tuple(examples)) if c.slug == team.slug else c
        for c in current
    ]
    return current, edited


def preview_description(
    team: Team,
    description: str,
    examples: Sequence[str],
    *,
    limit: int = PREVIEW_TICKETS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Of the last ``limit`` tickets, those the edited description would send to ``team`` (JSON-ready).

    ``gained``: tickets whose top team becomes ``team``; ``lost``: tickets whose top team was ``team``
    and no longer is; ``would_go``: how many go to ``team`` with the edit (``goes_now`` without).
    Both runs use the same zero-shot scorer, so the difference is the edit alone.
    """
    from mlops.inference.registry import resolve_scorer

    scorer = resolve_scorer().scorer
    current, edited = edited_classes(team, description, examples)
    slugs = [c.slug for c in current]
    names = {c.slug: c.name for c in current}
    tickets = list(Ticket.objects.order_by("-created_at", "-pk").only("pk", "subject", "body")[:limit])
    before: list[str] = []
    after: list[str] = []
    for start in range(0, len(tickets), PREVIEW_BATCH):
        texts = [t.text for t in tickets[start : start + PREVIEW_BATCH]]
        before.extend(slugs[i] for i in scorer.logits(texts, current).argmax(axis=1))
        after.extend(slugs[i] for i in scorer.logits(texts, edited).argmax(axis=1))
        if progress is not None:
            progress(min(start + PREVIEW_BATCH, len(tickets)), len(tickets))

    def row(ticket: Ticket, other: str) -> dict[str, Any]:
        return {"id": ticket.pk, "subject": ticket.subject, "other": names[other]}

    gained = [row(t, b) for t, b, a in zip(tickets, before, after, strict=True) if a == team.slug != b]
    lost = [row(t, a) for t, b, a in zip(tickets, before, after, strict=True) if b == team.slug != a]
    return {
        "team": team.slug,
        "scorer": scorer.name,
        "tickets": len(tickets),
        "would_go": after.count(team.slug),
        "goes_now": before.count(team.slug),
        "gained": gained,
        "lost": lost,
        "similar": similar_descriptions(edited, only=team.slug),
    }


def similar_descriptions(classes: Sequence, *, only: str | None = None) -> list[dict[str, Any]]:
    """Pairs of classes with cosine ≥ ``SIMILAR_DESCRIPTIONS`` between their embedding-scorer vectors."""
    from mlops.inference.registry import get_scorer

    if len(classes) < 2:
        return []
    vectors = get_scorer("embedding").class_vectors(list(classes))
    similarity = vectors @ vectors.T
    pairs = []
    for i, j in zip(*np.triu_indices(len(classes), k=1), strict=True):
        if similarity[i, j] >= SIMILAR_DESCRIPTIONS and only in (None, classes[i].slug, classes[j].slug):
            pairs.append(
                {
                    "teams": [classes[i].name, classes[j].name],
                    "slugs": [classes[i].slug, classes[j].slug],
                    "similarity": round(float(similarity[i, j]), 3),
                }
            )
    return sorted(pairs, key=lambda p: -p["similarity"])


def confused_pairs(*, window: int = CONFUSION_WINDOW, only: str | None = None) -> list[dict[str, Any]]:
    """Pairs of teams the router hesitated between on the last ``window`` tickets' latest decisions."""
    recent = Ticket.objects.order_by("-created_at", "-pk").values("pk")[:window]
    latest = Prediction.objects.filter(ticket__in=recent).latest_per_ticket().values_list("scores", flat=True)
    predicted: Counter[str] = Counter()
    confused: Counter[tuple[str, str]] = Counter()
    for scores in latest:
        if not isinstance(scores, dict) or len(scores) < 2:
            continue
        (first, p1), (second, p2) = sorted(scores.items(), key=lambda item: -float(item[1]))[:2]
        predicted[first] += 1
        if float(p1) - float(p2) <= CONFUSION_MARGIN:
            confused[tuple(sorted((first, second)))] += 1
    names = dict(Team.objects.values_list("slug", "name"))
    pairs = []
    for (a, b), count in confused.items():
        share = count / max(1, predicted[a] + predicted[b])
        if count >= CONFUSION_MIN_TICKETS and share >= CONFUSION_MIN_SHARE and only in (None, a, b):
            pairs.append(
                {"teams": [names.get(a, a), names.get(b, b)], "slugs": [a, b], "tickets": count, "share": share}
            )
    return sorted(pairs, key=lambda p: -p["tickets"])
