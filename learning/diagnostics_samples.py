"""The texts ``learning.diagnostics`` checks the models on: recent tickets, indexed passages, and sanity
pairs (a ticket, the article an agent marked helpful for it, and an unrelated article).

Each comes from this deployment's own data when there is any, else from the demo help centre
(``triage/demo_data``), so a fresh install can be checked before its first ticket.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from search.models import Article, Passage, SuggestionFeedback
from triage.models import Ticket

DEMO_DIR = Path(settings.BASE_DIR) / "triage" / "demo_data"
MARKS = "helpful marks"
DEMO = "demo help centre"


@dataclass(frozen=True)
class Sample:
    texts: list[str]
    source: str  # where they came from, shown beside the numbers


@dataclass(frozen=True)
class SanityPair:
    """A ticket with an article known to answer it and one that does not; passages as the search reads them."""

    ticket: str
    helpful: str  # article titles, for the page
    unrelated: str
    helpful_passages: tuple[str, ...]
    unrelated_passages: tuple[str, ...]


def _stable(key: str) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)


def _query(text: str) -> str:
    # What retrieval reads of a ticket (search.retrieval.clean_query), without its error on no text.
    return " ".join(text.split())[: settings.SEARCH_QUERY_MAX_CHARS]


def _demo_rows(name: str) -> list[dict[str, Any]]:
    with (DEMO_DIR / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items spread evenly over the sequence (all of them when there are fewer)."""
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def sample_tickets(n: int) -> Sample:
    """The ``n`` newest tickets as the search and the router read them, else the demo tickets."""
    rows = list(Ticket.objects.order_by("-created_at", "-id").values_list("subject", "body")[:n])
    texts = [_query(f"{s}\n\n{b}") for s, b in rows if f"{s}{b}".strip()]
    if texts:
        return Sample(texts, "newest tickets")
    demo = [_query(f"{r['subject']}\n\n{r['body']}") for r in _demo_rows("tickets.jsonl")]
    return Sample(_spread(demo, n), DEMO)


def demo_articles() -> dict[str, Article]:
    """The demo help centre's articles as unsaved rows (enough to split them into passages)."""
    return {
        r["id"]: Article(title=r["title"], body=r["body"], body_format=r.get("format", "markdown"))
        for r in _demo_rows("articles.jsonl")
    }


def sample_passages(n: int, embedder) -> Sample:
    """``n`` indexed passages spread over the knowledge base, else the demo articles' passages."""
    ids = list(Passage.objects.order_by("id").values_list("id", flat=True))
    if ids:
        chosen = _spread(ids, n)
        texts = dict(Passage.objects.filter(id__in=chosen).values_list("id", "text"))
        return Sample([texts[i] for i in chosen], "indexed passages")
    from search.indexing import build_passages

    texts = [d.text for article in demo_articles().values() for d in build_passages(article, embedder)]
    return Sample(_spread(texts, n), DEMO)


def _unrelated(key: str, helpful: str, candidates: Sequence[str], teams: dict[str, Any]) -> str | None:
    """An article of another team when teams are known, chosen by a hash (the same on every run)."""
    others = [a for a in candidates if a != helpful and (teams.get(a) is None or teams.get(a) != teams.get(helpful))]
    others = others or [a for a in candidates if a != helpful]
    return others[_stable(key) % len(others)] if others else None


def sanity_pairs(n: int, embedder) -> tuple[list[SanityPair], str]:
    """Up to ``n`` sanity pairs from agents' helpful marks (newest first), else from the demo tickets
    that list the articles answering them; and which of the two it was."""
    pairs = _pairs_from_marks(n)
    if pairs:
        return pairs, MARKS
    return _pairs_from_demo(n, embedder), DEMO


def _pairs_from_marks(n: int) -> list[SanityPair]:
    marks = (
        SuggestionFeedback.objects.filter(helpful=True, article__passages__isnull=False)
        .order_by("-created_at", "-id")
        .values_list("ticket_id", "article_id")
        .distinct()
    )
    chosen: list[tuple[int, int]] = []
    for ticket_id, article_id in marks.iterator():
        if ticket_id not in {t for t, _ in chosen}:
            chosen.append((ticket_id, article_id))
        if len(chosen) >= n:
            break
    if not chosen:
        return []
    indexed = Article.objects.filter(passages__isnull=False).distinct()
    teams = dict(indexed.values_list("id", "team_id"))
    candidates = sorted(teams)
    helpful_by_ticket: dict[int, set[int]] = {}
    for t, a in SuggestionFeedback.objects.filter(helpful=True, ticket_id__in=[t for t, _ in chosen]).values_list(
        "ticket_id", "article_id"
    ):
        helpful_by_ticket.setdefault(t, set()).add(a)
    tickets = {t.pk: t for t in Ticket.objects.filter(pk__in=[t for t, _ in chosen])}
    out = []
    for ticket_id, article_id in chosen:
        pool = [a for a in candidates if a not in helpful_by_ticket.get(ticket_id, set()) or a == article_id]
        other = _unrelated(f"{ticket_id}/{article_id}", article_id, pool, teams)
        if other is None:
            continue
        out.append(_pair(_query(tickets[ticket_id].text), article_id, other))
    return out


def _pair(ticket: str, helpful_id: int, unrelated_id: int) -> SanityPair:
    passages: dict[int, list[str]] = {}
    for article_id, text in (
        Passage.objects.filter(article_id__in=(helpful_id, unrelated_id))
        .order_by("position", "id")
        .values_list("article_id", "text")
    ):
        passages.setdefault(article_id, []).append(text)
    titles = dict(Article.objects.filter(id__in=(helpful_id, unrelated_id)).values_list("id", "title"))
    return SanityPair(
        ticket, titles[helpful_id], titles[unrelated_id], tuple(passages[helpful_id]), tuple(passages[unrelated_id])
    )


def _pairs_from_demo(n: int, embedder) -> list[SanityPair]:
    from search.indexing import build_passages

    articles = demo_articles()
    teams = {r["id"]: r.get("team") for r in _demo_rows("articles.jsonl")}
    rows = [r for r in _demo_rows("tickets.jsonl") if r.get("articles") and r["articles"][0] in articles]
    passages: dict[str, tuple[str, ...]] = {}

    def of(article_id: str) -> tuple[str, ...]:
        if article_id not in passages:
            passages[article_id] = tuple(d.text for d in build_passages(articles[article_id], embedder))
        return passages[article_id]

    out = []
    for row in _spread(rows, n):
        helpful = row["articles"][0]
        pool = [a for a in sorted(articles) if a not in row["articles"] or a == helpful]
        other = _unrelated(row["external_id"], helpful, pool, teams)
        if other is None:
            continue
        out.append(
            SanityPair(
                _query(f"{row['subject']}\n\n{row['body']}"),
                articles[helpful].title,
                articles[other].title,
                of(helpful),
                of(other),
            )
        )
    return out
