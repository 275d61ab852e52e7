"""Offline evaluation of every retrieval stage on labeled queries, on the app's own pipeline.

The knowledge base under test is imported and indexed by the same services the app uses, into
throw-away copies of the search tables (a temporary schema inside one transaction that is rolled
back), so the live knowledge base is neither read nor changed and nothing is left behind.

File formats (UTF-8):

* KB, JSONL: one ``{"id", "title", "body"}`` object per line; optional ``url``, ``format``
  (``markdown`` default, ``html``, ``text``) and ``published``; other keys (``team``...) are ignored.
* queries, TSV: ``qid<TAB>text`` per line (the text may not contain tabs or newlines).
* qrels, TSV: ``qid<TAB>article_id<TAB>relevance`` per line; relevance is an integer, > 0 relevant.
  A fourth column (TREC's ``qid 0 docid rel``) is also accepted.

Lines starting with ``#`` and blank lines are skipped.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.db import connection, transaction

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


# --- A knowledge base that exists only for the evaluation --------------------------------------


@contextmanager
def isolated_knowledge_base() -> Iterator[None]:
    """Inside the block, ``search_article`` and ``search_passage`` are empty copies (indexes included).

    Everything written in the block is rolled back when it ends, whatever happens.
    """
    schema = f"search_eval_{uuid.uuid4().hex[:12]}"
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            home = cursor.fetchone()[0]
            cursor.execute(f'CREATE SCHEMA "{schema}"')
            for table in ("search_article", "search_passage"):
                cursor.execute(f'CREATE TABLE "{schema}"."{table}" (LIKE "{home}"."{table}" INCLUDING ALL)')
            cursor.execute(f'SET LOCAL search_path TO "{schema}", "{home}"')
        try:
            yield
        finally:
            transaction.set_rollback(True)


def index_kb(rows: list[dict], *, embedder, progress: Callable[[int, int], None] | None = None) -> dict[int, str]:
    """Import and index ``rows`` with the app's services; returns {article pk: KB id}."""
    from .services import index_article, upsert_article

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


# --- Cross-encoder scores cached on disk across runs --------------------------------------------


class CachedCrossEncoder:
    """Wraps a cross-encoder with an on-disk cache of pair scores (SQLite), keyed by its version.

    Evaluations re-score the same (query, passage) pairs when only the fusion weights or the test
    split change; on two shared CPU cores that is most of their time.
    """

    def __init__(self, inner, path: Path) -> None:
        self.inner = inner
        self.version = inner.version
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL)")
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _key(self, a: str, b: str) -> str:
        return hashlib.sha256(f"{self.version}\x1f{a}\x1f{b}".encode()).hexdigest()

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        keys = [self._key(a, b) for a, b in pairs]
        with self._lock:
            found: dict[str, float] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self.db.execute(f"SELECT key, score FROM scores WHERE key IN ({marks})", chunk))
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            scores = self.inner.predict([pairs[i] for i in todo], batch_size=batch_size)
            with self._lock:
                rows = [(keys[i], float(s)) for i, s in zip(todo, scores, strict=True)]
                self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", rows)
                self.db.commit()
            for i, s in zip(todo, scores, strict=True):
                found[keys[i]] = float(s)
        return np.array([found[k] for k in keys], dtype=np.float32)


class CachedEmbedder:
    """Wraps the bi-encoder with an on-disk cache of passage and query vectors, keyed by its version."""

    def __init__(self, inner, path: Path) -> None:
        self.inner = inner
        self.model = inner.model  # the tokenizer and input limit used for passage windows
        self.version = inner.version
        self.dim = inner.dim
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB)")
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        keys = [hashlib.sha256(f"{self.version}\x1f{t}".encode()).hexdigest() for t in texts]
        with self._lock:
            found: dict[str, np.ndarray] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = self.db.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
                )
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            vectors = self.inner.encode([texts[i] for i in todo], batch_size=batch_size)
            with self._lock:
                self.db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                    [(keys[i], np.asarray(v, dtype=np.float32).tobytes()) for i, v in zip(todo, vectors, strict=True)],
                )
                self.db.commit()
            for i, v in zip(todo, vectors, strict=True):
                found[keys[i]] = np.asarray(v, dtype=np.float32)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])


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
) -> Features:
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


def latency_summary(features: Features) -> dict[str, dict[str, float]]:
    out = {}
    for part in ("embed", "dense", "lexical", "rerank"):
        values = [t[part] for t in features.latency_ms.values() if part in t]
        if values:
            out[part] = {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95))}
    return out


def default_cache_path() -> Path:
    from django.conf import settings

    return Path(settings.BASE_DIR) / ".data" / "search-eval-cache.sqlite"


def features_for_files(
    kb_path: Path,
    queries: Mapping[str, str],
    *,
    rerank_depth: int | None = None,
    dense_n: int | None = None,
    lexical_n: int | None = None,
    cache: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> tuple[Features, dict[str, str]]:
    """Index the KB file in an isolated knowledge base and collect every query's stage scores."""
    from mlops.inference.encoders import get_cross_encoder, get_embedder

    rows = load_kb(kb_path)
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
        log(f"running {len(queries)} queries")
        features = collect_features(
            queries,
            id_map,
            embedder=embedder,
            cross_encoder=cross_encoder,
            rerank_depth=rerank_depth,
            dense_n=dense_n,
            lexical_n=lexical_n,
            progress=every(25, "queries"),
        )
    if isinstance(cross_encoder, CachedCrossEncoder):
        log(f"cross-encoder cache: {cross_encoder.hits} pairs reused, {cross_encoder.misses} scored")
    return features, versions


def format_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    lines = [f"{'stage':<8} {'MRR@10':>7} {'NDCG@10':>8} {'Recall@100':>11} {'queries':>8}"]
    for stage in ("dense", "hybrid", "rerank", "final", "final_cv"):
        if stage not in metrics:
            continue
        m = metrics[stage]
        lines.append(f"{stage:<8} {m['mrr@10']:>7.4f} {m['ndcg@10']:>8.4f} {m['recall@100']:>11.4f} {m['queries']:>8}")
    return "\n".join(lines)
