"""Rows the dashboard tests start from: teams, a model version, decided tickets, suggestions.

These write the same rows the routing and search workers write, so that page tests do not need a
model; the end-to-end browser journey uses a real worker instead.
"""

from __future__ import annotations

import hashlib

from mlops.models import ModelVersion
from search.models import EMBEDDING_DIM, Article, Passage, Suggestion
from triage.models import Prediction, Team, Ticket

TEAMS = [
    ("billing", "Billing & Subscriptions"),
    ("orders", "Orders & Delivery"),
    ("account", "Account & Sign-in"),
    ("returns", "Returns & Refunds"),
]


def make_teams() -> dict[str, Team]:
    return {slug: Team.objects.get_or_create(slug=slug, defaults={"name": name})[0] for slug, name in TEAMS}


def make_model_version(version: str = "zs-1", scorer: str = "nli") -> ModelVersion:
    return ModelVersion.objects.get_or_create(
        scorer=scorer,
        version=version,
        defaults={"model_ref": "cross-encoder/nli-deberta-v3-small", "status": ModelVersion.Status.CANDIDATE},
    )[0]


def make_ticket(subject: str = "Charged twice", body: str = "My card was charged twice.", **fields) -> Ticket:
    return Ticket.objects.create(subject=subject, body=body, **fields)


def decide(
    ticket: Ticket,
    scores: dict[str, float],
    *,
    decision: str = Prediction.Decision.SUGGESTED,
    version: ModelVersion | None = None,
    threshold: float = 0.9,
    status: str | None = None,
) -> Prediction:
    """Store a routing decision the way the router does, and move the ticket on."""
    version = version or make_model_version()
    best = max(scores, key=scores.get)
    chosen = Team.objects.get(slug=best) if decision != Prediction.Decision.ABSTAINED else None
    prediction = Prediction.objects.create(
        ticket=ticket,
        model_version=version,
        scorer=version.scorer,
        scores=scores,
        raw_scores=scores,
        chosen_team=chosen,
        confidence=scores[best],
        threshold=threshold,
        decision=decision,
    )
    if status is None:
        status = Ticket.Status.NEEDS_TRIAGE if decision == Prediction.Decision.ABSTAINED else Ticket.Status.ROUTED
    ticket.status = status
    if chosen is not None:
        ticket.team = chosen
    ticket.save(update_fields=["status", "team", "updated_at"])
    return prediction


def make_suggestion(ticket: Ticket, title: str, passage_text: str, *, rank: int = 1, score: float = 0.8) -> Suggestion:
    digest = hashlib.sha256(title.encode()).hexdigest()
    article = Article.objects.create(title=title, body=passage_text, body_text=passage_text, content_hash=digest)
    passage = Passage.objects.create(
        article=article,
        position=0,
        text=passage_text,
        text_hash=digest,
        embedding=[0.0] * (EMBEDDING_DIM - 1) + [1.0],
        embedder_version="test",
    )
    return Suggestion.objects.create(
        ticket=ticket, article=article, passage=passage, passage_text=passage_text, score=score, rank=rank
    )
