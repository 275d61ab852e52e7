"""Per-deployment fusion weights from agents' own marks, refitted on a rolling window.

The shipped policy was fitted on other help centres and does not always carry over; a deployment's
marks say what works on its own tickets. ``refit_from_marks`` takes the marked tickets of the last
``SEARCH_FEEDBACK_WINDOW_DAYS`` (at most ``SEARCH_FEEDBACK_MAX_TICKETS``, newest first), scores each
against the live knowledge base *without its own learned questions*, and lets ``fitting.guarded_fit``
decide: the fit is stored (and served) only if, on marks held out of it, it beats both the policy in
force and every single stage. With fewer than ``SEARCH_FEEDBACK_MIN_TICKETS`` marked tickets nothing
is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .fitting import GuardedFit, LabeledSet, guarded_fit
from .fusion import active_weights
from .models import Article, FusionWeights, SuggestionFeedback


@dataclass(frozen=True)
class Refit:
    guard: GuardedFit
    stored: FusionWeights | None
    versions: dict[str, str]


def latest_marks(*, days: int | None = None, max_tickets: int | None = None) -> dict[str, dict[str, int]]:
    """Graded labels per marked ticket of the window: the latest mark per (ticket, article) wins,
    not helpful is an explicit 0; tickets with no helpful article are left out."""
    days = settings.SEARCH_FEEDBACK_WINDOW_DAYS if days is None else days
    max_tickets = settings.SEARCH_FEEDBACK_MAX_TICKETS if max_tickets is None else max_tickets
    since = timezone.now() - timedelta(days=days)
    latest: dict[str, dict[str, int]] = {}
    marks = SuggestionFeedback.objects.filter(created_at__gte=since).order_by("created_at", "id")
    for ticket_id, article_id, helpful in marks.values_list("ticket_id", "article_id", "helpful"):
        latest.setdefault(str(ticket_id), {})[str(article_id)] = int(helpful)
    labels = {t: m for t, m in latest.items() if any(m.values())}
    newest_first = sorted(labels, key=int, reverse=True)[:max_tickets]
    return {t: labels[t] for t in newest_first}


def marks_set(labels: dict[str, dict[str, int]], *, rerank_depth: int | None = None) -> tuple[LabeledSet, dict]:
    """The marked tickets' stage scores against the live knowledge base, each without its own questions."""
    from mlops.inference.encoders import get_cross_encoder, get_embedder
    from triage.models import Ticket

    from .evaluation import collect_features

    texts = {str(t.pk): t.text for t in Ticket.objects.filter(pk__in=[int(t) for t in labels])}
    id_map = {pk: str(pk) for pk in Article.objects.values_list("pk", flat=True)}
    embedder, cross_encoder = get_embedder(), get_cross_encoder()
    features = collect_features(
        texts,
        id_map,
        embedder=embedder,
        cross_encoder=cross_encoder,
        rerank_depth=rerank_depth,
        exclude_tickets={t: int(t) for t in texts},
    )
    versions = {"embedder": embedder.version, "reranker": cross_encoder.version}
    return LabeledSet("feedback", features.scores, labels, features.words), versions


def refit_from_marks(
    *, min_tickets: int | None = None, rerank_depth: int | None = None, store: bool = True, step: float = 0.1
) -> Refit:
    """Fit the fusion policy on the window's marks, guarded; store it when it earned its place."""
    min_tickets = settings.SEARCH_FEEDBACK_MIN_TICKETS if min_tickets is None else min_tickets
    labels = latest_marks()
    in_force, _ = active_weights()
    if len(labels) < min_tickets:
        return Refit(GuardedFit(in_force, "in force", {}, len(labels)), None, {})
    marks, versions = marks_set(labels, rerank_depth=rerank_depth)
    guard = guarded_fit(marks, in_force, min_queries=min_tickets, step=step)
    stored = None
    if store and guard.chosen != "in force":
        stored = FusionWeights.objects.create(
            weights=guard.policy.to_json(),
            source="feedback",
            n_queries=guard.n_queries,
            metrics={"held_out": guard.held_out, "chosen": guard.chosen, **(guard.fit.metrics if guard.fit else {})},
            embedder_version=versions.get("embedder", ""),
            reranker_version=versions.get("reranker", ""),
        )
    return Refit(guard, stored, versions)
