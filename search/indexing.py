"""Indexing: split an article into passages, embed them, and store them in one transaction.

Runs on the ``inference`` queue (``tasks.index_article_task``, ``reindex_articles_task``) after an
article's write commits. An article is searchable only once all of its passages are stored: the swap
of passages and the ``indexed`` state commit together, and while an edit is re-indexed the previous
complete passages keep being served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import Article, Passage

logger = logging.getLogger(__name__)


def _token_offsets_fn(embedder) -> Callable[[str], list[tuple[int, int]]]:
    tokenizer = embedder.model.tokenizer

    def offsets(text: str) -> list[tuple[int, int]]:
        if not text:
            return []
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [tuple(span) for span in encoded["offset_mapping"]]

    return offsets


def build_passages(article: Article, embedder) -> list:
    """The passage drafts of ``article`` for ``embedder`` (token windows of its own tokenizer)."""
    from .chunking import split_passages
    from .content import render_body

    sections = render_body(article.body, article.body_format).sections
    return split_passages(
        article.title,
        sections,
        token_offsets=_token_offsets_fn(embedder),
        window=settings.SEARCH_WINDOW_TOKENS,
        overlap=settings.SEARCH_OVERLAP_TOKENS,
        max_tokens=getattr(embedder.model, "max_seq_length", None),
    )


def index_article(article_id: int, *, embedder=None, force: bool = False) -> str:
    """Chunk, embed and store one article's passages; returns what happened.

    ``"indexed"``, ``"unchanged"`` (already indexed from this content by this embedder),
    ``"superseded"`` (edited meanwhile: the newer edit's task indexes it), ``"missing"`` or
    ``"failed"``. Passages whose text and embedder are unchanged keep their embedding, so an edit
    embeds only what changed. The swap of passages and the ``indexed`` state commit together.
    """
    from mlops.inference.encoders import ModelUnavailable, get_embedder

    article = Article.objects.filter(pk=article_id).first()
    if article is None:
        return "missing"
    try:
        embedder = embedder or get_embedder()
    except ModelUnavailable as exc:
        Article.objects.filter(pk=article_id).update(index_state=Article.IndexState.FAILED, index_error=str(exc))
        return "failed"
    version = embedder.version
    if (
        not force
        and article.indexed_hash == article.content_hash
        and article.embedder_version == version
        and article.index_state == Article.IndexState.INDEXED
    ):
        return "unchanged"
    Article.objects.filter(pk=article_id, content_hash=article.content_hash).update(
        index_state=Article.IndexState.INDEXING
    )
    try:
        drafts = build_passages(article, embedder)
        reusable = {
            h: e
            for h, e in Passage.objects.filter(article_id=article_id, embedder_version=version).values_list(
                "text_hash", "embedding"
            )
        }
        missing = [d for d in drafts if d.text_hash not in reusable]
        vectors = embedder.encode([d.text for d in missing]) if missing else []
        new_vectors = {d.text_hash: v for d, v in zip(missing, vectors, strict=True)}
    except Exception as exc:
        logger.exception("indexing article %s failed", article_id)
        Article.objects.filter(pk=article_id, content_hash=article.content_hash).update(
            index_state=Article.IndexState.FAILED, index_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        return "failed"

    with transaction.atomic():
        locked = Article.objects.select_for_update().filter(pk=article_id).first()
        if locked is None:
            return "missing"
        if locked.content_hash != article.content_hash:
            return "superseded"
        Passage.objects.filter(article_id=article_id).delete()
        Passage.objects.bulk_create(
            Passage(
                article_id=article_id,
                position=d.position,
                text=d.text,
                text_hash=d.text_hash,
                token_count=d.token_count,
                embedding=new_vectors[d.text_hash] if d.text_hash in new_vectors else reusable[d.text_hash],
                embedder_version=version,
            )
            for d in drafts
        )
        locked.index_state = Article.IndexState.INDEXED
        locked.index_error = ""
        locked.indexed_hash = locked.content_hash
        locked.embedder_version = version
        locked.indexed_at = timezone.now()
        locked.save(update_fields=["index_state", "index_error", "indexed_hash", "embedder_version", "indexed_at"])
    logger.info("article %s indexed: %d passages, %d embedded", article_id, len(drafts), len(missing))
    return "indexed"


def articles_needing_index(embedder_version: str):
    """Articles whose passages are missing, out of date, or from another embedder (not failed ones)."""
    from django.db.models import F, Q

    return (
        Article.objects.exclude(index_state=Article.IndexState.FAILED)
        .filter(~Q(indexed_hash=F("content_hash")) | ~Q(embedder_version=embedder_version))
        .order_by("id")
    )


def reindex_all(
    *,
    force: bool = False,
    include_failed: bool = False,
    background: bool = True,
    embedder=None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-index the knowledge base; returns how many articles were queued or indexed.

    By default only articles that need it (edited, never indexed, or embedded by another embedder
    than the configured one). ``background`` enqueues one batched task that re-enqueues itself while
    any remain (progress: ``reindex_status()``); otherwise it runs here, calling ``progress(done, total)``.
    """
    from mlops.inference.encoders import get_embedder

    embedder = embedder or get_embedder()
    if force:
        qs = Article.objects.order_by("id")
        if not include_failed:
            qs = qs.exclude(index_state=Article.IndexState.FAILED)
    else:
        qs = articles_needing_index(embedder.version)
        if include_failed:
            qs = qs | Article.objects.filter(index_state=Article.IndexState.FAILED)
    ids = list(qs.values_list("id", flat=True).distinct())
    if background:
        if force or include_failed:
            # Mark them so the batched task (which takes articles that need it) picks them up.
            Article.objects.filter(id__in=ids).update(
                index_state=Article.IndexState.PENDING, embedder_version="", index_error=""
            )
        from .tasks import reindex_articles_task

        if ids:
            reindex_articles_task.delay()
        return len(ids)
    for done, pk in enumerate(ids, start=1):
        index_article(pk, embedder=embedder, force=force)
        if progress:
            progress(done, len(ids))
    return len(ids)


def reindex_status(embedder_version: str | None = None) -> dict[str, Any]:
    """Counts for the admin and ``reindex_articles --status``: how far the knowledge base is indexed."""
    from django.db.models import Count

    states = dict(Article.objects.values_list("index_state").annotate(n=Count("id")))
    status: dict[str, Any] = {
        "articles": sum(states.values()),
        "searchable": Article.objects.searchable().count(),
        "states": {s: states.get(s, 0) for s in Article.IndexState.values},
        "passages": Passage.objects.count(),
        "embedder_versions": dict(
            Article.objects.exclude(embedder_version="").values_list("embedder_version").annotate(n=Count("id"))
        ),
    }
    if embedder_version:
        status["embedder_version"] = embedder_version
        status["current"] = Article.objects.filter(
            embedder_version=embedder_version, index_state=Article.IndexState.INDEXED
        ).count()
        status["remaining"] = articles_needing_index(embedder_version).count()
    return status
