"""Retrieve-then-rerank over the stored passages.

query → embedding → top-N passages from the HNSW index (cosine), plus Postgres full-text candidates
(OR of the query's lexemes, ranked by ``ts_rank_cd``) → reciprocal rank fusion → cross-encoder over
the best ``rerank_depth`` fused passages (batched, length-sorted) → best passage per article (MaxP)
for each stage → the fused final score (``fusion.combine``).

Only searchable articles are read: published, with a complete set of passages, and, for the dense
stage, passages embedded by the embedder that embeds the query (during an embedder switch the
articles not yet re-embedded are still found by full-text search).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from mlops.text import clean_ask

from .fusion import DEFAULT_SHORT_MAX_WORDS, FusionPolicy, combine, query_words, rank, weights_for

_SEARCHABLE = "a.published AND a.indexed_hash <> ''"


@dataclass(frozen=True)
class PassageHit:
    passage_id: int
    article_id: int
    text: str
    dense: float | None = None
    dense_rank: int | None = None
    lexical: float | None = None
    lexical_rank: int | None = None
    rrf: float = 0.0
    rerank: float | None = None


@dataclass(frozen=True)
class ArticleHit:
    """One candidate article: its best passage and its score at every stage (None: not scored there)."""

    article_id: int
    passage_id: int
    passage_text: str
    final: float
    dense: float | None
    hybrid: float | None
    rerank: float | None
    feedback: float | None = None

    def stage_scores(self) -> dict[str, float | None]:
        return {
            "dense": self.dense,
            "hybrid": self.hybrid,
            "rerank": self.rerank,
            "feedback": self.feedback,
            "final": self.final,
        }


@dataclass
class SearchResult:
    query: str
    articles: list[ArticleHit]  # every candidate article, best final score first
    stage_scores: dict[str, dict[int, float]]  # stage -> {article id: MaxP score}
    weights: dict[str, float]  # the vector this query was ranked with
    versions: dict[str, str]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def top(self, k: int) -> list[ArticleHit]:
        return self.articles[:k]

    def rankings(self) -> dict[str, list[int]]:
        from .fusion import stage_rankings

        keyed = {s: {str(a): v for a, v in scores.items()} for s, scores in self.stage_scores.items()}
        return {s: [int(a) for a in r] for s, r in stage_rankings(keyed, self.weights).items()}


def rerank_scope() -> str:
    """Which queries the cross-encoder reads: ``all``, ``short`` or ``off`` (``SEARCH_RERANK``; ``auto``
    resolved for this machine: all with a GPU or native bfloat16, else off — on a CPU without them
    30 pairs cost over a second per ticket, see search/README.md)."""
    if settings.SEARCH_RERANK != "auto":
        return settings.SEARCH_RERANK
    from mlops.inference.encoders import cpu_computes_bfloat16, resolve_device

    return "all" if resolve_device().startswith("cuda") or cpu_computes_bfloat16() else "off"


def clean_query(text: object) -> str:
    """The query as retrieval reads it; ``ValidationError`` when there is no text to search with."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError({"query": ["has no text to search with"]})
    return " ".join(text.split())[: settings.SEARCH_QUERY_MAX_CHARS]


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


def dense_passages(vector: np.ndarray, n: int, embedder_version: str) -> list[tuple[int, int, str, float]]:
    """(passage id, article id, text, cosine similarity) of the ``n`` nearest searchable passages."""
    literal = _vector_literal(vector)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(n, settings.SEARCH_EF_SEARCH)])
        # Filters (unpublished, other embedder) are applied after the index scan; iterative scans keep
        # reading the graph until n rows pass them instead of returning fewer.
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(
            f"""
            SELECT id, article_id, text, 1 - dist FROM (
                SELECT p.id, p.article_id, p.text, p.embedding <=> %s::vector AS dist
                FROM search_passage p JOIN search_article a ON a.id = p.article_id
                WHERE {_SEARCHABLE} AND p.embedder_version = %s
                ORDER BY p.embedding <=> %s::vector
                LIMIT %s
            ) nearest ORDER BY dist, id
            """,
            [literal, embedder_version, literal, n],
        )
        return [(int(r[0]), int(r[1]), r[2], float(r[3])) for r in cursor.fetchall()]


def nearest_questions(
    vector: np.ndarray, n: int, embedder_version: str, *, exclude_ticket: int | None = None
) -> list[tuple[int, bool, float]]:
    """(article id, helpful, cosine similarity) of the ``n`` learned questions nearest ``vector``,
    of searchable articles, embedded by ``embedder_version``; a ticket's own questions left out."""
    literal = _vector_literal(vector)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(n, settings.SEARCH_EF_SEARCH)])
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(
            f"""
            SELECT article_id, helpful, 1 - dist FROM (
                SELECT q.article_id, q.helpful, q.id, q.embedding <=> %s::vector AS dist
                FROM search_learnedquestion q JOIN search_article a ON a.id = q.article_id
                WHERE {_SEARCHABLE} AND q.embedder_version = %s AND q.ticket_id IS DISTINCT FROM %s
                ORDER BY q.embedding <=> %s::vector
                LIMIT %s
            ) nearest ORDER BY dist, id
            """,
            [literal, embedder_version, exclude_ticket, literal, n],
        )
        return [(int(r[0]), bool(r[1]), float(r[2])) for r in cursor.fetchall()]


def question_prototypes(
    vector: np.ndarray, article_ids: Iterable[int], embedder_version: str, *, exclude_ticket: int | None = None
) -> dict[int, float]:
    """Cosine similarity of ``vector`` to the *prototype* of each of ``article_ids`` that has helpful
    learned questions: the mean of their vectors (embedded by ``embedder_version``; a ticket's own left
    out).

    An article's marks vote together rather than through their single nearest one: one marked e-mail
    that shares its wording but not its problem with the ticket no longer lifts the wrong article. As a
    classifier of the Parcelwise dev e-mails, the marks' prototypes rank the right article at MRR@10
    0.83 where the nearest marked ticket does at 0.71 (search/README.md). Computed when read, so a
    retracted mark or a deleted ticket stops counting at once.
    """
    ids = sorted(set(article_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT q.article_id, 1 - (AVG(q.embedding) <=> %s::vector)
            FROM search_learnedquestion q JOIN search_article a ON a.id = q.article_id
            WHERE {_SEARCHABLE} AND q.helpful AND q.embedder_version = %s AND q.ticket_id IS DISTINCT FROM %s
                AND q.article_id = ANY(%s)
            GROUP BY q.article_id
            """,
            [_vector_literal(vector), embedder_version, exclude_ticket, ids],
        )
        return {int(r[0]): float(r[1]) for r in cursor.fetchall()}


def feedback_scores(
    dense: Mapping[int, float], prototypes: Mapping[int, float], questions: list[tuple[int, bool, float]]
) -> dict[int, float]:
    """The ``feedback`` stage: dense MaxP over an article's passages *and* its prototype (its helpful
    questions' mean, ``question_prototypes``), lowered by how much closer the ticket is to a question
    the article did not help (from the nearest ``questions``) than to the article itself. Without
    learned questions it is the dense stage.

    >>> feedback_scores({1: 0.5, 2: 0.5}, {1: 0.75}, [(1, True, 0.875), (2, False, 0.75)])
    {1: 0.75, 2: 0.25}
    """
    negative: dict[int, float] = {}
    for article_id, helpful, similarity in questions:
        if not helpful:
            negative[article_id] = max(negative.get(article_id, -1.0), similarity)
    scores = {}
    for a in set(dense) | set(prototypes):
        match = max(dense.get(a, -1.0), prototypes.get(a, -1.0))
        scores[a] = match - max(0.0, negative.get(a, -1.0) - match)
    return dict(sorted(scores.items()))


def lexical_passages(query: str, n: int) -> list[tuple[int, int, str, float]]:
    """(passage id, article id, text, rank) of the ``n`` best full-text matches.

    A ticket is long and worded unlike the article, so the query is the OR of its lexemes (not the
    AND that ``plainto_tsquery`` builds) and ``ts_rank_cd`` orders passages by how many they cover.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(quote_literal(lexeme), ' | ') "
            "FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme",
            [query],
        )
        tsquery = cursor.fetchone()[0]
        if not tsquery:
            return []
        cursor.execute(
            f"""
            SELECT p.id, p.article_id, p.text, ts_rank_cd(p.search_vector, q, 1) AS score
            FROM search_passage p JOIN search_article a ON a.id = p.article_id, CAST(%s AS tsquery) q
            WHERE p.search_vector @@ q AND {_SEARCHABLE}
            ORDER BY score DESC, p.id
            LIMIT %s
            """,
            [tsquery, n],
        )
        return [(int(r[0]), int(r[1]), r[2], float(r[3])) for r in cursor.fetchall()]


def fuse(
    dense: list[tuple[int, int, str, float]], lexical: list[tuple[int, int, str, float]], k: int = 60
) -> list[PassageHit]:
    """Reciprocal rank fusion of two passage lists, best first."""
    hits: dict[int, dict] = {}
    for r, (pid, aid, text, score) in enumerate(dense, start=1):
        hits[pid] = {
            "passage_id": pid,
            "article_id": aid,
            "text": text,
            "dense": score,
            "dense_rank": r,
            "rrf": 1.0 / (k + r),
        }
    for r, (pid, aid, text, score) in enumerate(lexical, start=1):
        hit = hits.setdefault(pid, {"passage_id": pid, "article_id": aid, "text": text, "rrf": 0.0})
        hit.update(lexical=score, lexical_rank=r)
        hit["rrf"] += 1.0 / (k + r)
    return sorted((PassageHit(**h) for h in hits.values()), key=lambda h: (-h.rrf, h.passage_id))


def _first_passage(article_id: int) -> PassageHit:
    from .models import Passage

    passage = Passage.objects.filter(article_id=article_id).order_by("position").first()
    if passage is None:
        return PassageHit(passage_id=0, article_id=article_id, text="")
    return PassageHit(passage_id=passage.pk, article_id=article_id, text=passage.text)


def search(
    query: str,
    *,
    dense_n: int | None = None,
    lexical_n: int | None = None,
    rerank_depth: int | None = None,
    weights: Mapping[str, float] | FusionPolicy | None = None,
    embedder=None,
    cross_encoder=None,
    exclude_ticket: int | None = None,
) -> SearchResult:
    """Rank the knowledge base's articles for ``query`` through every stage.

    ``weights`` is a stage weight vector or a ``FusionPolicy`` (default: the active one), which picks
    the vector by the query's length. ``rerank_depth`` (default ``SEARCH_RERANK_DEPTH``, 0 where
    ``rerank_scope()`` leaves this query out) passages are read by the cross-encoder.
    ``exclude_ticket``: that ticket's own learned questions are not read (a ticket is not suggested
    what it taught).

    >>> result = search("my card was declined at checkout")           # doctest: +SKIP
    >>> [(hit.article_id, round(hit.final, 2)) for hit in result.top(3)]  # doctest: +SKIP
    [(5, 2.31), (3, 1.12), (2, 0.4)]
    """
    return search_many(
        [query],
        dense_n=dense_n,
        lexical_n=lexical_n,
        rerank_depth=rerank_depth,
        weights=weights,
        embedder=embedder,
        cross_encoder=cross_encoder,
        exclude_tickets=[exclude_ticket],
    )[0]


@dataclass
class _Query:
    """One query of a batch on its way through the stages."""

    query: str
    ask: str
    words: int
    rerank_depth: int
    exclude_ticket: int | None
    timings: dict[str, float] = field(default_factory=dict)
    fused: list[PassageHit] = field(default_factory=list)
    questions: list[tuple[int, bool, float]] = field(default_factory=list)
    prototypes: dict[int, float] = field(default_factory=dict)
    rerank_scores: dict[int, float] = field(default_factory=dict)
    reranker: str = ""  # the cross-encoder's version, when it read this query


def search_many(
    queries: list[str],
    *,
    dense_n: int | None = None,
    lexical_n: int | None = None,
    rerank_depth: int | None = None,
    weights: Mapping[str, float] | FusionPolicy | None = None,
    embedder=None,
    cross_encoder=None,
    exclude_tickets: list[int | None] | None = None,
) -> list[SearchResult]:
    """``search`` for many queries, with one embedder call and one cross-encoder call for all of them
    (length-sorted batches across queries); the database stages run per query. Each result is the one
    ``search`` gives for its query alone. ``ValidationError`` when a query has no text.

    >>> [r.top(1)[0].article_id for r in search_many(["card declined", "parcel late"])]  # doctest: +SKIP
    [5, 9]
    """
    from mlops.inference.encoders import get_cross_encoder, get_embedder

    from .fusion import active_weights

    if exclude_tickets is not None and len(exclude_tickets) != len(queries):
        raise ValueError(f"{len(exclude_tickets)} tickets to exclude for {len(queries)} queries")
    dense_n = dense_n or settings.SEARCH_DENSE_CANDIDATES
    lexical_n = lexical_n if lexical_n is not None else settings.SEARCH_LEXICAL_CANDIDATES
    policy = weights if weights is not None else active_weights()[0]
    scope = rerank_scope() if rerank_depth is None else None
    batch: list[_Query] = []
    for raw, exclude in zip(queries, exclude_tickets or [None] * len(queries), strict=True):
        query = clean_query(raw)
        # The learned questions are asks (no greeting or signature): the ticket is matched to them by its
        # own, read from the text with its line breaks.
        ask = " ".join(clean_ask(raw).split())[: settings.SEARCH_QUERY_MAX_CHARS]
        words = query_words(query)
        depth = rerank_depth
        if depth is None:
            short = words <= (getattr(policy, "short_max_words", None) or DEFAULT_SHORT_MAX_WORDS)
            depth = settings.SEARCH_RERANK_DEPTH if scope == "all" or (scope == "short" and short) else 0
        batch.append(_Query(query, ask, words, depth, exclude))
    if not batch:
        return []
    embedder = embedder or get_embedder()
    started = time.perf_counter()

    # One embedder call: each query, and its ask where it differs.
    texts: list[str] = []
    for q in batch:
        texts += [q.query] if q.ask == q.query else [q.query, q.ask]
    t0 = time.perf_counter()
    vectors = embedder.encode(texts)
    embed_ms = (time.perf_counter() - t0) * 1000 / len(batch)
    row = 0
    for q in batch:
        vector, ask_vector = vectors[row], vectors[row + (0 if q.ask == q.query else 1)]
        row += 1 if q.ask == q.query else 2
        q.timings["embed"] = embed_ms
        t0 = time.perf_counter()
        dense = dense_passages(vector, dense_n, embedder.version)
        q.timings["dense"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        lexical = lexical_passages(q.query, lexical_n) if lexical_n else []
        q.timings["lexical"] = (time.perf_counter() - t0) * 1000
        q.fused = fuse(dense, lexical, settings.SEARCH_RRF_K)
        t0 = time.perf_counter()
        q.questions = nearest_questions(
            ask_vector, settings.SEARCH_QUESTION_CANDIDATES, embedder.version, exclude_ticket=q.exclude_ticket
        )
        if q.questions:  # none near: nothing is learned that this query may read
            # Prototypes of the articles dense found and of those the nearest helpful questions point to.
            q.prototypes = question_prototypes(
                ask_vector,
                {a for _, a, _, _ in dense} | {a for a, helpful, _ in q.questions if helpful},
                embedder.version,
                exclude_ticket=q.exclude_ticket,
            )
        q.timings["questions"] = (time.perf_counter() - t0) * 1000

    reranked = [q for q in batch if q.rerank_depth and q.fused]
    if reranked:
        # One cross-encoder call for every query's head: the pairs are length-sorted across queries.
        cross_encoder = cross_encoder or get_cross_encoder()
        pairs = [(q.query, h.text) for q in reranked for h in q.fused[: q.rerank_depth]]
        t0 = time.perf_counter()
        logits = cross_encoder.predict(pairs, batch_size=settings.SEARCH_RERANK_BATCH_SIZE)
        rerank_ms = (time.perf_counter() - t0) * 1000 / len(reranked)
        at = 0
        for q in reranked:
            head = q.fused[: q.rerank_depth]
            q.rerank_scores = {h.passage_id: float(s) for h, s in zip(head, logits[at : at + len(head)], strict=True)}
            at += len(head)
            q.timings["rerank"] = rerank_ms
            q.reranker = cross_encoder.version
    results = []
    for q in batch:
        versions = {"embedder": embedder.version, **({"reranker": q.reranker} if q.reranker else {})}
        result = _rank_articles(q, policy, versions)
        result.timings_ms["total"] = sum(q.timings.values())
        results.append(result)
    if len(batch) == 1:  # alone, the total is the wall time, as it always was
        results[0].timings_ms["total"] = (time.perf_counter() - started) * 1000
    return results


def _rank_articles(q: _Query, policy, versions: dict[str, str]) -> SearchResult:
    """MaxP per stage, the feedback stage, and the fused final ranking of one query's candidates."""
    # MaxP: an article scores what its best passage scores, separately at each stage.
    stage_scores: dict[str, dict[int, float]] = {"dense": {}, "hybrid": {}, "rerank": {}, "feedback": {}}
    best_passage: dict[int, tuple[float, float, PassageHit]] = {}
    for hit in q.fused:
        a = hit.article_id
        if hit.dense is not None:
            stage_scores["dense"][a] = max(stage_scores["dense"].get(a, -np.inf), hit.dense)
        stage_scores["hybrid"][a] = max(stage_scores["hybrid"].get(a, -np.inf), hit.rrf)
        ce = q.rerank_scores.get(hit.passage_id)
        if ce is not None:
            stage_scores["rerank"][a] = max(stage_scores["rerank"].get(a, -np.inf), ce)
        # The passage shown to agents: the reranker's favourite, else the best fused one.
        key = (ce if ce is not None else -np.inf, hit.rrf)
        if a not in best_passage or key > best_passage[a][:2]:
            best_passage[a] = (*key, hit)

    stage_scores["feedback"] = feedback_scores(stage_scores["dense"], q.prototypes, q.questions)
    keyed = {s: {str(a): v for a, v in scores.items()} for s, scores in stage_scores.items()}
    weights = weights_for(policy, q.words, keyed)  # the policy's unreranked vectors where nothing was reranked
    final = combine(keyed, weights)
    articles = []
    for key in rank(final):
        a = int(key)
        if a not in best_passage:
            # Found only through its learned questions: show its first passage.
            best_passage[a] = (-np.inf, 0.0, _first_passage(a))
        hit = best_passage[a][2]
        articles.append(
            ArticleHit(
                article_id=a,
                passage_id=hit.passage_id,
                passage_text=hit.text,
                final=final[key],
                dense=stage_scores["dense"].get(a),
                hybrid=stage_scores["hybrid"].get(a),
                rerank=stage_scores["rerank"].get(a),
                feedback=stage_scores["feedback"].get(a),
            )
        )
    return SearchResult(
        query=q.query,
        articles=articles,
        stage_scores=stage_scores,
        weights=dict(weights),
        versions=versions,
        timings_ms=dict(q.timings),
    )
