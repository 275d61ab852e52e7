"""Verb-named functions that write the knowledge base and the suggestions made from it.

The admin, the REST API, the importer and the tasks call these instead of saving models themselves,
so every article is validated, sanitised and (re-)indexed the same way. Functions that take raw
input raise ``django.core.exceptions.ValidationError`` with a message per field and store nothing.

Indexing (chunk, embed, store) runs on the ``inference`` queue after the write commits; an article
is searchable only once all of its passages are stored, in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction

from .content import render_body
from .models import Article, Passage, Suggestion, SuggestionFeedback
from .questions import flag_edited_article

logger = logging.getLogger(__name__)

TITLE_MAX = 300
URL_MAX = 500
EXTERNAL_ID_MAX = 200
ARTICLE_FIELDS = {"external_id", "id", "url", "title", "body", "body_format", "format", "team", "published"}
# Postgres text cannot hold NUL; other C0 controls (except tab/newline/CR) mean a binary file.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _text(value: Any, field: str, max_len: int | None, *, required: bool, errors: dict[str, list[str]]) -> str:
    if value is None:
        value = ""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.setdefault(field, []).append(f"is not valid UTF-8 text (byte {exc.start})")
            return ""
    if not isinstance(value, str):
        errors.setdefault(field, []).append(f"must be text, got {type(value).__name__}")
        return ""
    if _CONTROL.search(value):
        errors.setdefault(field, []).append("contains binary control characters; is this a binary file?")
        return ""
    value = value.strip()
    if required and not value:
        errors.setdefault(field, []).append("is required and cannot be blank")
    elif max_len is not None and len(value) > max_len:
        errors.setdefault(field, []).append(f"is {len(value):,} characters long; the limit is {max_len:,}")
    return value


def _bool(value: Any, field: str, errors: dict[str, list[str]]) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    errors.setdefault(field, []).append("must be true or false")
    return True


def clean_article_fields(data: Mapping[str, Any], *, instance: Article | None = None) -> dict[str, Any]:
    """Validate raw article fields (admin form, API payload, import row) and render the body.

    With ``instance``, missing fields keep the instance's values (a partial update). Returns model
    field values including ``body_html``, ``body_text`` and ``content_hash``; raises
    ``ValidationError`` with a message per field. ``id`` is accepted as an alias of ``external_id``
    and ``format`` of ``body_format`` (the JSONL import format).

    >>> clean_article_fields({"title": "Refunds", "body": "Ask **within** 30 days."})["body_text"]
    'Ask within 30 days.'
    """
    from triage.models import Team

    def get(name: str, default: Any = None, alias: str | None = None) -> Any:
        if name in data:
            return data[name]
        if alias and alias in data:
            return data[alias]
        return getattr(instance, name) if instance is not None else default

    errors: dict[str, list[str]] = {}
    unknown = sorted(set(data) - ARTICLE_FIELDS)
    if unknown:
        errors.setdefault(unknown[0], []).append(f"unknown field (expected {', '.join(sorted(ARTICLE_FIELDS))})")
    cleaned: dict[str, Any] = {
        "title": _text(get("title"), "title", TITLE_MAX, required=True, errors=errors),
        "body": _text(get("body"), "body", settings.SEARCH_ARTICLE_MAX_CHARS, required=True, errors=errors),
        "url": _text(get("url"), "url", URL_MAX, required=False, errors=errors),
    }
    external_id = get("external_id", alias="id")
    if external_id in (None, ""):
        cleaned["external_id"] = None
    else:
        cleaned["external_id"] = _text(str(external_id), "external_id", EXTERNAL_ID_MAX, required=True, errors=errors)
    if cleaned["url"]:
        try:
            URLValidator(schemes=["http", "https"])(cleaned["url"])
        except ValidationError:
            errors.setdefault("url", []).append("is not a valid http(s) URL")
    body_format = get("body_format", Article.Format.MARKDOWN, alias="format") or Article.Format.MARKDOWN
    if body_format not in Article.Format.values:
        errors.setdefault("body_format", []).append(f"must be one of {', '.join(Article.Format.values)}")
    cleaned["body_format"] = body_format
    cleaned["published"] = _bool(get("published", True), "published", errors)
    team = get("team")
    cleaned["team"] = None
    if isinstance(team, Team):
        cleaned["team"] = team
    elif team not in (None, ""):
        cleaned["team"] = Team.objects.filter(slug=str(team)).first()
        if cleaned["team"] is None:
            errors.setdefault("team", []).append(f"unknown team {team!r}")

    if "body" not in errors and body_format in Article.Format.values:
        rendered = render_body(cleaned["body"], body_format)
        if not rendered.text:
            errors.setdefault("body", []).append("has no readable text once markup and scripts are removed")
        cleaned["body_html"] = rendered.html
        cleaned["body_text"] = rendered.text
        cleaned["content_hash"] = content_hash(cleaned["title"], rendered.text)
    if errors:
        raise ValidationError(errors)
    return cleaned


def content_hash(title: str, body_text: str) -> str:
    """What the passages are built from: a change here means re-indexing."""
    return hashlib.sha256(f"{title}\x1f{body_text}".encode()).hexdigest()


def find_article(external_id: str | None, url: str | None) -> Article | None:
    """The stored article an import row or API call refers to: by external id, else by URL."""
    if external_id:
        return Article.objects.filter(external_id=external_id).first()
    if url:
        return Article.objects.filter(url=url).first()
    return None


def enqueue_index(article_id: int) -> None:
    """Index the article on the inference queue once the current transaction commits.

    The article stays ``pending`` until indexed, so a broker that is down loses nothing: the next
    re-index (a worker start, ``reindex_articles``) takes it; the error is logged, not raised.
    """
    from config.celery import send_or_defer

    from .tasks import index_article_task

    transaction.on_commit(lambda: send_or_defer(index_article_task, article_id))


def upsert_article(
    data: Mapping[str, Any], *, article: Article | None = None, index: bool = True
) -> tuple[Article, str]:
    """Create or update one article from raw fields; returns ``(article, "created"|"updated"|"unchanged")``.

    Without ``article`` the row is matched by ``external_id``, else by ``url``; with neither a new
    article is created. A change of title or body marks it ``pending`` and (with ``index``) enqueues
    re-indexing; its previous passages keep being served until the new ones are stored. Raises
    ``ValidationError`` with a message per field on bad input.

    >>> art, outcome = upsert_article({"external_id": "kb-1", "title": "Refunds", "body": "..."})  # doctest: +SKIP
    >>> outcome                                                                               # doctest: +SKIP
    'created'
    """
    for attempt in range(2):
        try:
            with transaction.atomic():
                target = article
                if target is None:
                    ext = data.get("external_id", data.get("id"))
                    target = find_article(str(ext) if ext not in (None, "") else None, data.get("url") or None)
                if target is not None:
                    target = Article.objects.select_for_update().get(pk=target.pk)
                fields = clean_article_fields(data, instance=target)
                if target is None:
                    created = Article.objects.create(**fields, index_state=Article.IndexState.PENDING)
                    if index:
                        enqueue_index(created.pk)
                    return created, "created"
                changed = [name for name, value in fields.items() if getattr(target, name) != value]
                if not changed:
                    return target, "unchanged"
                reindex = fields["content_hash"] != target.indexed_hash
                for name in changed:
                    setattr(target, name, fields[name])
                update = [*changed, "updated_at"]
                if reindex:
                    target.index_state = Article.IndexState.PENDING
                    target.index_error = ""
                    update += ["index_state", "index_error"]
                target.save(update_fields=update)
                if "content_hash" in changed:
                    flag_edited_article(target.pk, target.content_hash)
                if reindex and index:
                    enqueue_index(target.pk)
                return target, "updated"
        except IntegrityError as exc:
            # Two writers created the same external id or URL at once: the second updates instead.
            if attempt == 0 and article is None:
                continue
            raise ValidationError({"external_id": [f"conflicts with another article: {exc}"]}) from None
    raise AssertionError("unreachable")


def delete_article(article: Article | int) -> bool:
    """Delete an article with its passages and suggestions; ``False`` when it was already gone."""
    pk = article.pk if isinstance(article, Article) else int(article)
    deleted, _ = Article.objects.filter(pk=pk).delete()
    return deleted > 0


def set_published(article: Article, published: bool) -> Article:
    """Show or hide an article in suggestions without re-indexing it."""
    if article.published != published:
        article.published = published
        article.save(update_fields=["published", "updated_at"])
    return article


# --- Suggestions -------------------------------------------------------------------------------


def suggest_for_ticket(ticket, *, k: int | None = None, search_kwargs: Mapping[str, Any] | None = None):
    """Compute and store the top-``k`` article suggestions for a ticket; returns them, best first.

    ``ticket`` is a Ticket or its id. Earlier suggestions of the ticket are replaced (agents' helpful
    marks stay). A ticket with no text, or a knowledge base with nothing searchable, gets none. Each
    carries its relevance probability; those below the cutoff are stored with ``fits=False`` (the page
    shows "no article fits" when none fits). The ticket's own learned questions are not read.

    >>> [(s.rank, s.article.title, round(s.score, 2)) for s in suggest_for_ticket(ticket)]  # doctest: +SKIP
    [(1, 'Why was I charged twice?', 2.1), ...]
    """
    from triage.models import Ticket

    if not isinstance(ticket, Ticket):
        ticket = Ticket.objects.get(pk=ticket)
    return suggest_for_tickets([ticket], k=k, search_kwargs=search_kwargs)[ticket.pk]


def suggest_for_tickets(
    tickets, *, k: int | None = None, search_kwargs: Mapping[str, Any] | None = None
) -> dict[int, list[Suggestion]]:
    """``suggest_for_ticket`` for many tickets, with their model calls batched across tickets
    (``retrieval.search_many``); each ticket's suggestions are stored in its own transaction and are
    the ones ``suggest_for_ticket`` stores for it alone. ``tickets`` are Tickets or ids; ids of deleted
    tickets are skipped. Returns the stored suggestions per ticket id.

    >>> {pk: len(rows) for pk, rows in suggest_for_tickets([12, 13]).items()}  # doctest: +SKIP
    {12: 5, 13: 5}
    """
    from triage.models import Ticket

    from .fusion import active_weights
    from .relevance import load_relevance_model
    from .retrieval import clean_query, search_many

    ids = [t if isinstance(t, int) else t.pk for t in tickets]
    given = {t.pk: t for t in tickets if isinstance(t, Ticket)}
    missing = [pk for pk in ids if pk not in given]
    given.update(Ticket.objects.in_bulk(missing))
    rows = [given[pk] for pk in ids if pk in given]
    k = k or settings.SEARCH_SUGGESTIONS
    policy, weights_source = active_weights()
    searchable = []
    for ticket in rows:
        try:
            clean_query(ticket.text)
        except ValidationError:  # nothing to search with: no suggestions
            continue
        searchable.append(ticket)
    results = search_many(
        [t.text for t in searchable],
        weights=policy,
        exclude_tickets=[t.pk for t in searchable],
        **dict(search_kwargs or {}),
    )
    by_ticket = {t.pk: r for t, r in zip(searchable, results, strict=True)}
    model = load_relevance_model()
    return {
        ticket.pk: _store_suggestions(ticket, by_ticket.get(ticket.pk), k, model, policy, weights_source)
        for ticket in rows
    }


def _store_suggestions(ticket, result, k: int, model, policy, weights_source: str) -> list[Suggestion]:
    """Replace the ticket's suggestions with the top ``k`` of ``result`` (None: no search), in one transaction."""
    from .fusion import query_words
    from .relevance import score_result

    hits = result.top(k) if result is not None else []
    relevance = score_result(model, result, k) if hits else {}
    with transaction.atomic():
        # A redelivered or re-sent copy may compute the same ticket at the same time: lock the ticket so
        # the second write replaces the first instead of colliding with it (one row per article).
        from triage.models import Ticket

        list(Ticket.objects.select_for_update().filter(pk=ticket.pk).values_list("pk", flat=True))
        Suggestion.objects.filter(ticket=ticket).delete()
        rows = [
            Suggestion(
                ticket=ticket,
                article_id=hit.article_id,
                passage_id=hit.passage_id,
                passage_text=hit.passage_text,
                score=hit.final,
                rank=rank,
                relevance=relevance.get(hit.article_id),
                fits=model is None or relevance.get(hit.article_id, 0.0) >= model.cutoff,
                stage_scores={
                    **hit.stage_scores(),
                    "weights": result.weights,
                    "weights_source": weights_source,
                    "weights_regime": policy.regime(query_words(result.query)),
                    **result.versions,
                },
            )
            for rank, hit in enumerate(hits, start=1)
        ]
        # An article deleted between retrieval and now must not fail the whole write.
        alive = set(Article.objects.filter(id__in=[r.article_id for r in rows]).values_list("id", flat=True))
        alive_passages = set(Passage.objects.filter(id__in=[r.passage_id for r in rows]).values_list("id", flat=True))
        for row in rows:
            if row.passage_id not in alive_passages:
                row.passage_id = None
        stored = Suggestion.objects.bulk_create([r for r in rows if r.article_id in alive])
    return stored


def request_suggestions(ticket_id: int) -> None:
    """Recompute a ticket's suggestions on the inference queue once the current transaction commits
    (the "refresh" button); ``suggest_for_ticket`` does it in-process instead.

    Per-ticket work (``triage.work``): recorded now, sent after commit, sent later if the broker is down.
    """
    from triage.work import request_work

    from .tasks import SUGGEST

    with transaction.atomic():
        request_work(ticket_id, [SUGGEST])


def record_suggestion_feedback(ticket, article: Article, *, helpful: bool, agent=None) -> SuggestionFeedback:
    """Store an agent's helpful / not-helpful mark on an article for a ticket.

    The mark also teaches the search: the ticket's ask becomes a learned question of the article
    (``questions.learn_from_mark``), positive or negative, replacing this agent's earlier mark's.
    """
    from .questions import learn_from_mark

    with transaction.atomic():
        suggestion = Suggestion.objects.filter(ticket=ticket, article=article).first()
        mark = SuggestionFeedback.objects.create(
            ticket=ticket,
            article=article,
            suggestion=suggestion,
            rank=suggestion.rank if suggestion else None,
            helpful=bool(helpful),
            agent=agent,
        )
        learn_from_mark(mark, ticket.text)
    return mark


def retract_suggestion_feedback(ticket, article: Article, *, agent=None) -> int:
    """Withdraw the agent's marks on an article for a ticket, and the questions they taught.

    Returns how many marks were deleted (0 when there were none).
    """
    marks = SuggestionFeedback.objects.filter(ticket=ticket, article=article)
    marks = marks.filter(agent=agent) if agent is not None else marks.filter(agent__isnull=True)
    deleted, by_model = marks.delete()  # learned questions go with their mark (cascade)
    return by_model.get(SuggestionFeedback._meta.label, 0)


def retract_mark(mark: SuggestionFeedback | int) -> bool:
    """Withdraw one mark (an admin reviewing an article's learned questions) and the question it taught;
    ``False`` when it was already gone."""
    pk = mark.pk if isinstance(mark, SuggestionFeedback) else int(mark)
    deleted, _ = SuggestionFeedback.objects.filter(pk=pk).delete()
    return deleted > 0
