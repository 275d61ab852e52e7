"""Deflection: articles for a ticket that is still being written, while the person types.

The new-ticket form's live box (``search.views.deflect``) and the portals' API (``POST /api/deflect/``)
both call ``deflect``. It is the served retrieval (``retrieval.search``: dense, full text, learned
questions, the fusion policy in force) *without* the reranker, whatever ``SEARCH_RERANK`` says — a
keystroke cannot wait for a cross-encoder on a CPU — and the relevance model's cutoff: only articles at
or above it are returned, and none above it means "no article fits". Nothing is stored.

It runs in the web process: the bi-encoder is loaded there on the first call (``warm`` at worker start,
``config/gunicorn.conf.py``), because a round trip through the inference queue would put each keystroke
behind the routing and suggestion tasks that queue runs. It is the one web path that loads a model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError

from .content import passage_excerpt
from .models import Article

logger = logging.getLogger(__name__)

MAX_LIMIT = 10  # articles one call may ask for


@dataclass(frozen=True)
class Deflection:
    article_id: int
    title: str
    url: str
    excerpt: str
    score: float
    relevance: float | None  # probability that it helps; None without a relevance model


@dataclass(frozen=True)
class DeflectionResult:
    articles: list[Deflection]  # those that fit, best first
    no_article_fits: bool  # candidates were found, none reached the cutoff
    timings_ms: dict[str, float] = field(default_factory=dict)


def check_text(text: object) -> str:
    """The text to deflect; ``ValidationError`` when it is not text, is blank or is too long."""
    if not isinstance(text, str):
        raise ValidationError({"text": [f"must be text, got {type(text).__name__}"]})
    if not text.strip():
        raise ValidationError({"text": ["is blank: type a few words of the question"]})
    if len(text) > settings.SEARCH_DEFLECT_MAX_CHARS:
        raise ValidationError(
            {"text": [f"is {len(text):,} characters long; the limit is {settings.SEARCH_DEFLECT_MAX_CHARS:,}"]}
        )
    if "\x00" in text:
        raise ValidationError({"text": ["contains a NUL character"]})
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from JSON: Postgres and the tokenizer refuse it
        raise ValidationError({"text": [f"is not valid Unicode (character {exc.start})"]}) from None
    return text


def deflect(text: object, *, limit: int | None = None, embedder=None) -> DeflectionResult:
    """The articles that fit ``text`` (at most ``limit``, default ``SEARCH_SUGGESTIONS``), best first.

    Raises ``ValidationError`` on text that is not text, blank or longer than
    ``SEARCH_DEFLECT_MAX_CHARS``.

    >>> result = deflect("I was charged twice for my subscription")   # doctest: +SKIP
    >>> [(a.title, round(a.relevance, 2)) for a in result.articles]  # doctest: +SKIP
    [('Request a refund for a subscription charge', 0.81)]
    """
    from .relevance import load_relevance_model, score_result
    from .retrieval import search

    text = check_text(text)
    limit = min(limit or settings.SEARCH_SUGGESTIONS, MAX_LIMIT)
    result = search(text, rerank_depth=0, embedder=embedder)
    hits = result.top(limit)
    model = load_relevance_model()
    relevance = score_result(model, result, limit)
    fitting = [h for h in hits if model is None or relevance.get(h.article_id, 0.0) >= model.cutoff]
    articles = Article.objects.only("id", "title", "url").in_bulk([h.article_id for h in fitting])
    found = [
        Deflection(
            article_id=h.article_id,
            title=articles[h.article_id].title,
            url=articles[h.article_id].url,
            excerpt=passage_excerpt(h.passage_text, articles[h.article_id].title),
            score=h.final,
            relevance=relevance.get(h.article_id),
        )
        for h in fitting
        if h.article_id in articles  # deleted since it was retrieved
    ]
    return DeflectionResult(articles=found, no_article_fits=bool(hits) and not found, timings_ms=result.timings_ms)


def warm() -> None:
    """Load the bi-encoder now (a web worker's start) instead of on the first keystroke."""
    from mlops.inference.encoders import get_embedder

    try:
        get_embedder()
    except Exception as exc:  # the first deflection will say what is wrong; the worker still serves pages
        logger.warning("deflection: could not load the embedder: %s", exc)
