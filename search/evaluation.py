"""Offline evaluation of every retrieval stage on labeled queries, on the app's own pipeline.

The knowledge base under test is imported and indexed by the same services the app uses, into
throw-away copies of the search tables (a temporary schema inside one transaction that is rolled
back), so the live knowledge base is neither read nor changed and nothing is left behind.

File formats (UTF-8):

* KB, JSONL: one ``{"id", "title", "body"}`` object per line; optional ``url``, ``format``
  (``markdown`` default, ``html``, ``text``) and ``published``; other keys (``team``...) are ignored.
* queries, TSV: ``qid<TAB>text`` per line (the text may not contain tabs or newlines).
* qrels, TSV: ``qid<TAB>article_id<TAB>relevance`` per line; relevance is an integer, > 0 relevant.
  A fourth column (TREC's ``qid 0 docid rel``) is also accepted. A query with no relevant article
  in the qrels is a *no-answer* query: left out of the ranking metrics, counted by the cutoff's.
* feedback, TSV with a header line ``text<TAB>article_id<TAB>helpful``, then one agent's mark per
  line (helpful ``1`` or ``0``): past tickets that become learned questions of the KB under test.

Lines starting with ``#`` and blank lines are skipped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.db import connection, transaction

from .fitting import LabeledSet
from .fusion import STAGES, StageScores, Weights, stage_metrics


class EvaluationInputError(ValueError):
    """A KB, queries or qrels file cannot be used; the message names the file and line."""


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    data = Path(path).read_bytes()
    if b"\x00" in data[:8192]:
        raise EvaluationInputError(f"{path}: binary file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EvaluationInputError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.startswith("#"):
            yield number, line


def load_kb(path: Path) -> list[dict]:
    rows, seen = [], {}
    for number, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluationInputError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) and row[k].strip() for k in ("id", "title", "body")
        ):
            raise EvaluationInputError(f'{path}:{number}: each line needs non-empty "id", "title" and "body"')
        if row["id"] in seen:
            raise EvaluationInputError(f"{path}:{number}: id {row['id']!r} repeats line {seen[row['id']]}")
        seen[row["id"]] = number
        rows.append({k: row[k] for k in ("id", "title", "body", "url", "format", "published") if k in row})
    if not rows:
        raise EvaluationInputError(f"{path}: no articles")
    return rows


def load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, line in _lines(path):
        qid, sep, text = line.partition("\t")
        if not sep or not qid.strip() or not text.strip():
            raise EvaluationInputError(f"{path}:{number}: expected qid<TAB>text")
        if qid in queries:
            raise EvaluationInputError(f"{path}:{number}: query id {qid!r} repeats")
        queries[qid.strip()] = text.strip()
    if not queries:
        raise EvaluationInputError(f"{path}: no queries")
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(path):
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) == 4:
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            raise EvaluationInputError(f"{path}:{number}: expected qid<TAB>article_id<TAB>relevance")
        try:
            grade = int(cols[2])
        except ValueError:
            raise EvaluationInputError(f"{path}:{number}: relevance must be an integer, got {cols[2]!r}") from None
        qrels.setdefault(cols[0].strip(), {})[cols[1].strip()] = grade
    return qrels


def load_feedback(path: Path) -> list[tuple[str, str, bool]]:
    """(ticket text, KB article id, helpful) per mark of a feedback file."""
    rows: list[tuple[str, str, bool]] = []
    lines = iter(_lines(path))
    first = next(lines, None)
    if first is None or [c.strip().lower() for c in first[1].split("\t")] != ["text", "article_id", "helpful"]:
        raise EvaluationInputError(f"{path}:1: the first line must be the header text<TAB>article_id<TAB>helpful")
    for number, line in lines:
        cols = line.split("\t")
        if len(cols) != 3 or not cols[0].strip() or not cols[1].strip():
            raise EvaluationInputError(f"{path}:{number}: expected text<TAB>article_id<TAB>helpful")
        if cols[2].strip() not in ("0", "1"):
            raise EvaluationInputError(f"{path}:{number}: helpful must be 1 or 0, got {cols[2].strip()!r}")
        rows.append((cols[0].strip(), cols[1].strip(), cols[2].strip() == "1"))  # breaks kept for clean_ask
    if not rows:
        raise EvaluationInputError(f"{path}: no marks")
    return rows


def refuse_marks_on_queries(marks: list[tuple[str, str, bool]], queries: Mapping[str, str], path: Path | None) -> None:
    """A mark on a ticket that is also an evaluated query leaks its answer: the feedback stage finds the
    query's own learned question and scores ~1.0 on it. Marks must come from tickets outside the queries
    (as a deployment's marks come from past tickets), so such a file is refused, with the first overlaps."""
    asked = {" ".join(text.split()).lower() for text in queries.values()}
    leaked = [text for text, _article, _helpful in marks if " ".join(text.split()).lower() in asked]
    if leaked:
        shown = "; ".join(repr(text[:60]) for text in leaked[:3])
        raise EvaluationInputError(
            f"{path}: {len(leaked)} mark(s) are on tickets that are also evaluated queries ({shown}); "
            "marks must come from tickets outside the queries, or the feedback stage reads their answers"
        )


# --- A knowledge base that exists only for the evaluation --------------------------------------


@contextmanager
def isolated_knowledge_base() -> Iterator[None]:
    """Inside the block, ``search_article``, ``search_passage`` and ``search_learnedquestion`` are empty
    copies (indexes included, foreign keys not).

    Everything written in the block is rolled back when it ends, whatever happens.
    """
    schema = f"search_eval_{uuid.uuid4().hex[:12]}"
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            home = cursor.fetchone()[0]
            cursor.execute(f'CREATE SCHEMA "{schema}"')
            for table in ("search_article", "search_passage", "search_learnedquestion"):
                cursor.execute(f'CREATE TABLE "{schema}"."{table}" (LIKE "{home}"."{table}" INCLUDING ALL)')
            cursor.execute(f'SET LOCAL search_path TO "{schema}", "{home}"')
        try:
            yield
        finally:
            transaction.set_rollback(True)


def index_kb(rows: list[dict], *, embedder, progress: Callable[[int, int], None] | None = None) -> dict[int, str]:
    """Import and index ``rows`` with the app's services; returns {article pk: KB id}."""
    from .indexing import index_article
    from .services import upsert_article

    ids: dict[int, str] = {}
    for done, row in enumerate(rows, start=1):
        data = {k: v for k, v in row.items() if k != "id"}
        data["external_id"] = row["id"]
        article, _ = upsert_article(data, index=False)
        outcome = index_article(article.pk, embedder=embedder)
        if outcome != "indexed":
            raise EvaluationInputError(f"KB article {row['id']!r} could not be indexed ({outcome})")
        ids[article.pk] = row["id"]
        if progress:
            progress(done, len(rows))
    return ids


def learn_feedback(
    marks: list[tuple[str, str, bool]], id_map: Mapping[int, str], *, embedder
) -> dict[str, tuple[int, str, dict[str, int]]]:
    """Store each mark as a learned question the way the app does, and embed them.

    Returns, per past ticket (``fb-N``, one per distinct text), its id in the questions table, its
    text, and its marks as graded labels (helpful 1, not helpful 0; the last mark on an article wins).
    """
    from django.utils import timezone

    from mlops.text import clean_ask

    from .models import LearnedQuestion
    from .questions import embed_learned_questions

    pk_of = {kb_id: pk for pk, kb_id in id_map.items()}
    tickets: dict[str, tuple[int, str, dict[str, int]]] = {}
    rows = []
    for number, (text, kb_id, helpful) in enumerate(marks, start=1):
        if kb_id not in pk_of:
            raise EvaluationInputError(f"feedback mark {number}: article {kb_id!r} is not in the KB")
        ticket = tickets.setdefault(text, (len(tickets) + 1, text, {}))
        ticket[2][kb_id] = int(helpful)
        # No ticket or mark rows exist in the throw-away tables (their foreign keys are not copied).
        rows.append(
            LearnedQuestion(
                article_id=pk_of[kb_id],
                ticket_id=ticket[0],
                feedback_id=number,
                helpful=helpful,
                text=clean_ask(text),
                source_text=text,
                marked_at=timezone.now(),
            )
        )
    LearnedQuestion.objects.bulk_create(rows)
    embed_learned_questions(embedder=embedder)
    return {f"fb-{t[0]}": t for t in tickets.values()}


# --- Running the queries ------------------------------------------------------------------------


@dataclass
class Features:
    """Per query: each stage's MaxP score per KB article id, the search latency, and the query's
    length in words (what a length-gated ``FusionPolicy`` reads)."""

    scores: dict[str, StageScores]
    latency_ms: dict[str, dict[str, float]]
    words: dict[str, int] = field(default_factory=dict)


def collect_features(
    queries: Mapping[str, str],
    id_map: Mapping[int, str],
    *,
    embedder,
    cross_encoder,
    rerank_depth: int | None = None,
    dense_n: int | None = None,
    lexical_n: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    exclude_tickets: Mapping[str, int] | None = None,
) -> Features:
    """Every stage's scores for each query; ``exclude_tickets``: query id → the learned-question
    ticket id that query must not see (a past ticket is scored without its own marks)."""
    from .fusion import query_words
    from .retrieval import search

    scores: dict[str, StageScores] = {}
    latency: dict[str, dict[str, float]] = {}
    words: dict[str, int] = {}
    for done, (qid, text) in enumerate(queries.items(), start=1):
        result = search(
            text,
            embedder=embedder,
            cross_encoder=cross_encoder,
            rerank_depth=rerank_depth,
            dense_n=dense_n,
            lexical_n=lexical_n,
            weights={s: 1.0 for s in STAGES},
            exclude_ticket=(exclude_tickets or {}).get(qid),
        )
        scores[qid] = {
            stage: {id_map[a]: v for a, v in result.stage_scores[stage].items() if a in id_map} for stage in STAGES
        }
        latency[qid] = result.timings_ms
        words[qid] = query_words(result.query)
        if progress:
            progress(done, len(queries))
    return Features(scores=scores, latency_ms=latency, words=words)


def evaluate(features: Features, qrels: Mapping[str, Mapping[str, int]], weights: Weights) -> dict:
    """Metrics of every stage and of the final ranking: ``{"dense": {...}, ..., "final": {...}}``.

    ``weights`` is a vector or a ``FusionPolicy`` (each query ranked with the vector for its length).
    """
    return stage_metrics(features.scores, qrels, weights, features.words)


def without_feedback(features: Features) -> Features:
    """The same queries as if nothing had been learned: the feedback stage is the dense stage."""
    scores = {q: {**f, "feedback": dict(f.get("dense", {}))} for q, f in features.scores.items()}
    return Features(scores=scores, latency_ms=features.latency_ms, words=features.words)


def latency_summary(features: Features) -> dict[str, dict[str, float]]:
    out = {}
    for part in ("embed", "dense", "lexical", "questions", "rerank", "total"):
        values = [t[part] for t in features.latency_ms.values() if part in t]
        if values:
            out[part] = {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95))}
    return out


def default_cache_path() -> Path:
    from django.conf import settings

    return Path(settings.BASE_DIR) / ".data" / "search-eval-cache.sqlite"


@dataclass
class Run:
    """One evaluation's stage scores: of the queries, and of the past tickets in the feedback file
    (each scored without its own marks, the way a deployment fits on its marks)."""

    features: Features
    versions: dict[str, str]
    marks: LabeledSet | None = None


def features_for_files(
    kb_path: Path,
    queries: Mapping[str, str],
    *,
    feedback: Path | None = None,
    marks_on_queries: bool = False,
    rerank_depth: int | None = None,
    dense_n: int | None = None,
    lexical_n: int | None = None,
    cache: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> Run:
    """Index the KB file (and the feedback file's marks as learned questions) in an isolated
    knowledge base and collect every query's stage scores."""
    from mlops.inference.encoders import get_cross_encoder, get_embedder

    from .eval_cache import CachedCrossEncoder, CachedEmbedder

    rows = load_kb(kb_path)
    marks_in_file = load_feedback(feedback) if feedback is not None else []
    if not marks_on_queries:
        refuse_marks_on_queries(marks_in_file, queries, feedback)
    embedder = get_embedder()
    cross_encoder = get_cross_encoder()
    if cache is not None:
        cross_encoder = CachedCrossEncoder(cross_encoder, cache)
        embedder = CachedEmbedder(embedder, cache)
    versions = {"embedder": embedder.version, "reranker": cross_encoder.version}

    def every(step: int, what: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if done % step == 0 or done == total:
                log(f"  {what} {done}/{total}")

        return report

    with isolated_knowledge_base():
        log(f"indexing {len(rows)} KB articles ({embedder.version})")
        id_map = index_kb(rows, embedder=embedder, progress=every(25, "indexed"))
        options = {"embedder": embedder, "cross_encoder": cross_encoder, "rerank_depth": rerank_depth}
        options.update(dense_n=dense_n, lexical_n=lexical_n)
        marks = None
        if feedback is not None:
            tickets = learn_feedback(marks_in_file, id_map, embedder=embedder)
            log(f"learned {len(marks_in_file)} marks on {len(tickets)} past tickets; scoring each without its own")
            past = collect_features(
                {qid: t[1] for qid, t in tickets.items()},
                id_map,
                exclude_tickets={qid: t[0] for qid, t in tickets.items()},
                progress=every(50, "past tickets"),
                **options,
            )
            marks = LabeledSet("feedback", past.scores, {qid: t[2] for qid, t in tickets.items()}, past.words)
        log(f"running {len(queries)} queries")
        features = collect_features(queries, id_map, progress=every(25, "queries"), **options)
    if isinstance(cross_encoder, CachedCrossEncoder):
        log(f"cross-encoder cache: {cross_encoder.hits} pairs reused, {cross_encoder.misses} scored")
    return Run(features, versions, marks)


def format_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    lines = [f"{'stage':<22} {'MRR@10':>7} {'NDCG@10':>8} {'Recall@100':>11} {'queries':>8}"]
    for stage in ("dense", "hybrid", "rerank", "feedback", "final", "final_without_feedback", "final_cv"):
        if stage not in metrics:
            continue
        m = metrics[stage]
        lines.append(f"{stage:<22} {m['mrr@10']:>7.4f} {m['ndcg@10']:>8.4f} {m['recall@100']:>11.4f} {m['queries']:>8}")
    return "\n".join(lines)
