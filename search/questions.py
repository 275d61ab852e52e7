"""Learned questions: agents' helpful / not-helpful marks kept as questions an article answers or not.

A mark (``services.record_suggestion_feedback``) stores a ``LearnedQuestion`` with the ticket's ask
(``mlops.text.clean_ask``) at once, in the same transaction; the inference queue embeds it afterwards
(``embed_learned_questions``), keeping of a long ask only the sentences nearest the article. At
query time ``retrieval`` reads them: an article's helpful questions raise it through their mean vector
(its prototype, ``retrieval.question_prototypes``; MaxP over passages and prototype), a not-helpful
one lowers it for tickets that resemble it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from django.db import transaction

from mlops.text import best_sentences, clean_ask, split_sentences

from .models import LearnedQuestion, Passage, SuggestionFeedback

logger = logging.getLogger(__name__)

# A long ask is cut to this many sentences (those nearest the article): enough for a problem and
# its detail, few enough that small talk that survived the cleaning does not dominate the vector.
ASK_SENTENCES = 3
EMBED_BATCH = 200  # questions one background task embeds before re-enqueueing itself


def learn_from_mark(mark: SuggestionFeedback, ticket_text: str) -> LearnedQuestion:
    """Store the question a mark teaches (not yet embedded) and embed it after commit.

    The agent's earlier marks on the same ticket and article stop teaching: a changed mind replaces
    the question, it does not add a second one.
    """
    earlier = SuggestionFeedback.objects.filter(ticket_id=mark.ticket_id, article_id=mark.article_id).exclude(
        pk=mark.pk
    )
    earlier = earlier.filter(agent=mark.agent) if mark.agent_id else earlier.filter(agent__isnull=True)
    LearnedQuestion.objects.filter(feedback__in=earlier).delete()
    question = LearnedQuestion.objects.create(
        article_id=mark.article_id,
        ticket_id=mark.ticket_id,
        feedback=mark,
        helpful=mark.helpful,
        text=clean_ask(ticket_text),
        source_text=ticket_text,
        author_id=mark.agent_id,
        marked_at=mark.created_at,
        article_hash=mark.article.content_hash,
    )
    enqueue_embedding()
    return question


def enqueue_embedding() -> None:
    """Embed the questions still missing a vector, on the inference queue once the transaction commits.

    A broker that is down loses nothing: the questions keep no vector until the next worker start embeds
    them (``search.tasks.reindex_after_embedder_change``); the error is logged, not raised.
    """
    from config.celery import send_or_defer

    from .tasks import embed_learned_questions_task

    transaction.on_commit(lambda: send_or_defer(embed_learned_questions_task))


def questions_needing_embedding(embedder_version: str):
    """Questions with no vector, or one from another embedder than ``embedder_version``."""
    return LearnedQuestion.objects.exclude(embedder_version=embedder_version).order_by("id")


def ask_for_article(text: str, article_id: int, embedder) -> str:
    """The sentences of ``text`` (an already cleaned ask) nearest the article's passages."""
    sentences = split_sentences(text)
    if len(sentences) <= ASK_SENTENCES:
        return text
    targets = np.array(
        [
            np.asarray(v, dtype=np.float32)
            for v in Passage.objects.filter(article_id=article_id, embedder_version=embedder.version).values_list(
                "embedding", flat=True
            )
        ]
    )
    if not len(targets):
        return text
    vectors = embedder.encode(sentences)
    return " ".join(best_sentences(sentences, vectors, targets, keep=ASK_SENTENCES))


def embed_learned_questions(ids: Iterable[int] | None = None, *, embedder=None, limit: int | None = None) -> int:
    """Embed questions missing a vector for the configured embedder; returns how many were stored.

    Each question's text is first cut to its sentences nearest its article. A question deleted (mark
    retracted) while this ran is simply not stored.
    """
    from mlops.inference.encoders import get_embedder

    embedder = embedder or get_embedder()
    todo = questions_needing_embedding(embedder.version)
    if ids is not None:
        todo = todo.filter(id__in=list(ids))
    rows = list(
        todo.values_list("id", "article_id", "text")[:limit] if limit else todo.values_list("id", "article_id", "text")
    )
    if not rows:
        return 0
    asks = [ask_for_article(clean_ask(text), article_id, embedder) for _, article_id, text in rows]
    vectors = embedder.encode(asks)
    stored = 0
    for (pk, _, _), ask, vector in zip(rows, asks, vectors, strict=True):
        stored += LearnedQuestion.objects.filter(pk=pk).update(
            text=ask, embedding=vector, embedder_version=embedder.version
        )
    logger.info("embedded %d learned questions", stored)
    return stored


def flag_edited_article(article_id: int, content_hash: str) -> int:
    """Flag the article's questions learned on other content than ``content_hash``; they stay in use."""
    return (
        LearnedQuestion.objects.filter(article_id=article_id, article_edited=False)
        .exclude(article_hash=content_hash)
        .update(article_edited=True)
    )
