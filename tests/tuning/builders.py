"""Recorded predictions and labels for the tuning and report tests, with the truth kept in Python.

``build_history`` writes tickets, predictions (some tickets predicted twice, by two versions),
labels (some tickets relabeled: the latest wins) and suggestion marks, with controlled timestamps,
and returns a plain description of what it wrote so tests can compute every number directly.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from mlops.models import ModelVersion
from search.models import EMBEDDING_DIM, Article, Passage, Suggestion, SuggestionFeedback
from triage.models import Correction, Prediction, Team, Ticket

TEAM_SLUGS = ["billing", "orders", "account", "returns"]
START = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)  # a Monday: ISO week 2025-W10


@dataclass
class PredictionFact:
    ticket_id: int
    version_id: int
    created_at: dt.datetime
    scores: dict[str, float]
    top: str
    confidence: float
    decision: str
    chosen: str | None


@dataclass
class History:
    teams: dict[str, Team]
    versions: list[ModelVersion]
    ticket_created: dict[int, dt.datetime] = field(default_factory=dict)
    predictions: list[PredictionFact] = field(default_factory=list)
    labels: dict[int, list[tuple[dt.datetime, str]]] = field(default_factory=dict)
    marks: dict[int, list[tuple[int, int, bool, dt.datetime]]] = field(default_factory=dict)  # article, rank, helpful

    def latest_label(self, ticket_id: int) -> str | None:
        rows = self.labels.get(ticket_id)
        return max(rows)[1] if rows else None

    def latest_prediction(self, ticket_id: int, version_id: int | None = None) -> PredictionFact | None:
        rows = [p for p in self.predictions if p.ticket_id == ticket_id and version_id in (None, p.version_id)]
        return max(rows, key=lambda p: p.created_at) if rows else None

    def window(self, n: int | None, version_id: int | None = None) -> list[tuple[PredictionFact, str | None]]:
        """The last ``n`` tickets with a prediction, newest first: (latest prediction, latest label)."""
        tickets = sorted(self.ticket_created, key=lambda t: self.ticket_created[t], reverse=True)
        out = []
        for ticket_id in tickets:
            prediction = self.latest_prediction(ticket_id, version_id)
            if prediction is not None:
                out.append((prediction, self.latest_label(ticket_id)))
        return out[:n] if n else out


def make_teams() -> dict[str, Team]:
    return {
        slug: Team.objects.get_or_create(slug=slug, defaults={"name": slug.title(), "mode": Team.Mode.AUTO})[0]
        for slug in TEAM_SLUGS
    }


def make_version(version: str, status: str = ModelVersion.Status.RETIRED) -> ModelVersion:
    return ModelVersion.objects.create(scorer="fixture", model_ref="fixture", version=version, status=status)


def _scores(rng: random.Random, true_team: str) -> dict[str, float]:
    raw = {slug: rng.random() ** 2 for slug in TEAM_SLUGS}
    raw[true_team] += rng.random() * 1.5  # the label's team usually, not always, wins
    total = sum(raw.values())
    # Rounded so that ties in confidence happen, as they do with calibrated scores.
    return {slug: round(value / total, 2) for slug, value in raw.items()}


def build_history(n_tickets: int = 160, seed: int = 7, with_marks: bool = True) -> History:
    rng = random.Random(seed)
    teams = make_teams()
    old, new = make_version("v1"), make_version("v2")
    history = History(teams=teams, versions=[old, new])
    tickets = [Ticket(subject=f"ticket {i}", body=f"body {i}") for i in range(n_tickets)]
    Ticket.objects.bulk_create(tickets)
    predictions, corrections = [], []
    articles = []
    if with_marks:
        for a in range(3):
            article = Article.objects.create(title=f"Article {a}", body="x", body_text="x", content_hash=f"h{a}")
            Passage.objects.create(
                article=article,
                position=0,
                text="x",
                text_hash=f"h{a}",
                embedding=[0.0] * (EMBEDDING_DIM - 1) + [1.0],
                embedder_version="test",
            )
            articles.append(article)
    for i, ticket in enumerate(tickets):
        created = START + dt.timedelta(hours=3 * i)  # spans about three ISO weeks
        ticket.created_at = created
        history.ticket_created[ticket.pk] = created
        true_team = rng.choice(TEAM_SLUGS)
        versions = [old] if i % 5 else [old, new]  # every fifth ticket is predicted again by v2
        if i % 11 == 3:
            versions = [new]
        for k, version in enumerate(versions):
            scores = _scores(rng, true_team)
            top = max(sorted(scores), key=lambda s: scores[s])
            confidence = scores[top]
            decision = rng.choice(["auto_routed", "suggested", "abstained"])
            chosen = None if decision == "abstained" else top
            made = created + dt.timedelta(minutes=1 + 30 * k)
            predictions.append(
                Prediction(
                    ticket=ticket,
                    model_version=version,
                    scorer="fixture",
                    scores=scores,
                    raw_scores=scores,
                    chosen_team=teams[chosen] if chosen else None,
                    confidence=confidence,
                    threshold=0.5,
                    decision=decision,
                    created_at=made,
                )
            )
            history.predictions.append(
                PredictionFact(ticket.pk, version.pk, made, scores, top, confidence, decision, chosen)
            )
        if i % 4 != 0:  # three quarters labeled
            first = true_team if rng.random() < 0.85 else rng.choice(TEAM_SLUGS)
            kinds = ["accepted", "corrected", "imported"]
            made = created + dt.timedelta(hours=1)
            corrections.append((ticket, first, rng.choice(kinds), made))
            history.labels.setdefault(ticket.pk, []).append((made, first))
            if i % 7 == 1:  # relabeled later: the latest label wins
                second = rng.choice([s for s in TEAM_SLUGS if s != first])
                later = created + dt.timedelta(hours=2)
                corrections.append((ticket, second, "reassigned", later))
                history.labels[ticket.pk].append((later, second))
        if with_marks and i % 3 == 0:
            for rank, article in enumerate(articles, start=1):
                if rng.random() < 0.7:
                    helpful = rng.random() < 0.4
                    history.marks.setdefault(ticket.pk, []).append((article.pk, rank, helpful, created))
    Ticket.objects.bulk_update(tickets, ["created_at"])
    made_at = [p.created_at for p in predictions]  # auto_now_add overwrites them on insert
    stored = Prediction.objects.bulk_create(predictions)
    for row, made in zip(stored, made_at, strict=True):
        row.created_at = made
    Prediction.objects.bulk_update(stored, ["created_at"])
    rows = Correction.objects.bulk_create(
        [
            Correction(ticket=t, kind=kind, to_team=teams[slug], to_team_slug=slug, source="test")
            for t, slug, kind, _ in corrections
        ]
    )
    for row, (_, _, _, made) in zip(rows, corrections, strict=True):
        row.created_at = made
    Correction.objects.bulk_update(rows, ["created_at"])
    if with_marks:
        suggestion_rows, feedback_rows = [], []
        for ticket in tickets:
            for rank, article in enumerate(articles, start=1):
                suggestion_rows.append(Suggestion(ticket=ticket, article=article, score=1.0 / rank, rank=rank))
        Suggestion.objects.bulk_create(suggestion_rows)
        for ticket_id, marks in history.marks.items():
            for article_id, rank, helpful, _ in marks:
                feedback_rows.append(
                    SuggestionFeedback(ticket_id=ticket_id, article_id=article_id, rank=rank, helpful=helpful)
                )
        SuggestionFeedback.objects.bulk_create(feedback_rows)
    return history
