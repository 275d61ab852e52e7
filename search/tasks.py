"""Celery tasks of the knowledge base (queue ``inference``). Thin and idempotent: each recomputes
what is still missing, so a redelivered message does no harm."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError

from triage.work import MAX_RETRIES, register_work, run_batch

logger = logging.getLogger(__name__)

SUGGEST = "suggest"
# The database blinked (a restart, a failover): worth another try.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
# The article tasks retry a lost database connection the same way, with capped exponential backoff
# (suggestions are per-ticket work: ``triage.work.run_batch`` has the rules).
RETRY_ON_DB_ERRORS = {
    "autoretry_for": TRANSIENT_DB_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": settings.TRIAGE_TASK_MAX_COUNTDOWN_SECONDS,
}


@shared_task(
    name="search.tasks.index_article_task",
    **RETRY_ON_DB_ERRORS,
    max_retries=5,
)
def index_article_task(article_id: int) -> str:
    """Chunk, embed and store one article's passages (skipped when already up to date)."""
    from .indexing import index_article

    return index_article(article_id)


@shared_task(
    name="search.tasks.reindex_articles_task",
    **RETRY_ON_DB_ERRORS,
    max_retries=5,
)
def reindex_articles_task(batch_size: int | None = None) -> dict:
    """Index a batch of the articles that need it, then re-enqueue itself while any remain.

    Used when the embedder changes (every article's passages are from another embedder) and by
    ``reindex_articles``; progress is ``indexing.reindex_status()``.
    """
    from django.conf import settings

    from mlops.inference.encoders import get_embedder

    from .indexing import articles_needing_index, index_article

    embedder = get_embedder()
    size = batch_size or settings.SEARCH_INDEX_BATCH
    batch = list(articles_needing_index(embedder.version).values_list("id", flat=True)[:size])
    outcomes: dict[str, int] = {}
    for pk in batch:
        outcome = index_article(pk, embedder=embedder)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    remaining = articles_needing_index(embedder.version).count()
    # Stop when a batch made no progress (everything left is being edited or failing) to avoid spinning.
    if remaining and outcomes.get("indexed", 0):
        reindex_articles_task.delay(batch_size=batch_size)
    logger.info("re-index batch: %s; %d remaining", outcomes, remaining)
    return {"outcomes": outcomes, "remaining": remaining}


@shared_task(
    bind=True,
    name="search.tasks.suggest_articles_task",
    acks_late=True,
    max_retries=MAX_RETRIES,
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def suggest_articles_task(self, ticket_id: int) -> int:
    """Compute and store the article suggestions of a ticket and of the suggestion jobs waiting with it
    (one batch, ``triage.work.run_batch``: claimed first, retried, a failing ticket left to the sweeper);
    returns how many suggestions were stored."""
    from .services import suggest_for_tickets

    run = run_batch(self, SUGGEST, ticket_id, suggest_for_tickets)
    return sum(len(rows) for rows in run.outcomes.values())


register_work(SUGGEST, suggest_articles_task, label="suggestions")


@shared_task(
    name="search.tasks.embed_learned_questions_task",
    **RETRY_ON_DB_ERRORS,
    max_retries=5,
)
def embed_learned_questions_task() -> dict:
    """Embed a batch of the learned questions still missing a vector, re-enqueueing itself while any remain."""
    from mlops.inference.encoders import get_embedder

    from .questions import EMBED_BATCH, embed_learned_questions, questions_needing_embedding

    embedder = get_embedder()
    stored = embed_learned_questions(embedder=embedder, limit=EMBED_BATCH)
    remaining = questions_needing_embedding(embedder.version).count()
    if remaining and stored:
        embed_learned_questions_task.delay()
    return {"embedded": stored, "remaining": remaining}


@shared_task(
    name="search.tasks.refit_search_weights_task",
    **RETRY_ON_DB_ERRORS,
    max_retries=3,
)
def refit_search_weights_task() -> dict:
    """Refit the fusion policy on the rolling window of agents' marks (beat, daily); stored only
    when it beats the policy in force and every single stage on held-out marks."""
    from .adapt import refit_from_marks

    refit = refit_from_marks()
    return {"chosen": refit.guard.chosen, "tickets": refit.guard.n_queries, "stored": getattr(refit.stored, "pk", None)}


def configured_embedder_version() -> str:
    """The version string the configured embedder records, without loading its weights."""
    from django.conf import settings

    from mlops.inference.encoders import _fingerprint, resolve_model_ref

    ref = settings.TRIAGE_EMBEDDER_MODEL
    return f"{ref}@{_fingerprint(resolve_model_ref(ref))}"


@worker_ready.connect
def reindex_after_embedder_change(sender=None, **_kwargs) -> None:
    """A worker that serves the inference queue starts the background re-index when articles need it
    (first start, or a new ``TRIAGE_EMBEDDER_MODEL``): switching the embedder needs no manual step."""
    try:
        consume_from = sender.app.amqp.queues.consume_from if sender is not None else None
        if consume_from and "inference" not in consume_from:
            return
        from .indexing import articles_needing_index
        from .questions import questions_needing_embedding

        version = configured_embedder_version()
        if articles_needing_index(version).exists():
            reindex_articles_task.delay()
        if questions_needing_embedding(version).exists():
            embed_learned_questions_task.delay()
    except Exception:  # never keep a worker from starting; `reindex_articles` does the same by hand
        logger.exception("could not check whether articles need re-indexing")
