"""The served ranking: a weighted sum of the stages' per-query standardised scores.

A cross-encoder does not always beat the bi-encoder it reranks (on one bank help centre, MaxP dense
scored MRR@10 0.89 and reranking 0.86), so the app never trusts one stage blindly. Each article gets
its dense (MaxP cosine), hybrid (MaxP reciprocal-rank-fusion) and rerank (MaxP cross-encoder logit)
scores; each is standardised over the query's candidate articles and the final score is
``w_dense·z_dense + w_hybrid·z_hybrid + w_rerank·z_rerank``. The weights are fitted on labeled
queries (``fit_search_weights``) or agents' helpful marks: where the reranker hurts, its fitted weight
falls towards 0 and the ranking falls back to the dense/hybrid stages.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .metrics import mrr_at_k, ndcg_at_k, summarise

STAGES = ("dense", "hybrid", "rerank")
DEFAULT_WEIGHTS_FILE = Path(__file__).resolve().parent / "default_weights.json"
# Used only when neither a fitted row nor the shipped file exists.
FALLBACK_WEIGHTS = {"dense": 0.4, "hybrid": 0.2, "rerank": 0.4}

StageScores = Mapping[str, Mapping[str, float]]  # stage -> {article key: score}


def normalise_weights(weights: Mapping[str, float], stages: Sequence[str] = STAGES) -> dict[str, float]:
    """Weights restricted to ``stages``, non-negative and summing to 1.

    >>> normalise_weights({"dense": 1, "rerank": 3}, ("dense", "hybrid"))
    {'dense': 1.0, 'hybrid': 0.0}
    """
    clipped = {s: max(0.0, float(weights.get(s, 0.0))) for s in stages}
    total = sum(clipped.values())
    if total <= 0:
        return {s: 1.0 / len(stages) for s in stages}
    return {s: v / total for s, v in clipped.items()}


def standardise(scores: Mapping[str, float], candidates: Sequence[str]) -> dict[str, float]:
    """z-scores over ``candidates``; a candidate the stage did not score gets the stage's lowest score."""
    if not scores:
        return {c: 0.0 for c in candidates}
    floor = min(scores.values())
    values = [scores.get(c, floor) for c in candidates]
    mean = statistics.fmean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    if std == 0:
        return {c: 0.0 for c in candidates}
    return {c: (v - mean) / std for c, v in zip(candidates, values, strict=True)}


def combine(stage_scores: StageScores, weights: Mapping[str, float]) -> dict[str, float]:
    """Final score per candidate article (the union of every stage's articles).

    Stages that produced nothing (reranking off) drop out and the other weights are rescaled.

    >>> s = combine({"dense": {"a": 0.9, "b": 0.5}, "hybrid": {"a": 0.01, "b": 0.03}, "rerank": {}},
    ...             {"dense": 0.5, "hybrid": 0.25, "rerank": 0.25})
    >>> max(s, key=s.get)
    'a'
    """
    candidates = sorted({c for scores in stage_scores.values() for c in scores})
    present = [s for s in STAGES if stage_scores.get(s)]
    if not present:
        return {c: 0.0 for c in candidates}
    w = normalise_weights(weights, present)
    total = {c: 0.0 for c in candidates}
    for stage in present:
        if w[stage] == 0:
            continue
        for c, z in standardise(stage_scores[stage], candidates).items():
            total[c] += w[stage] * z
    return total


def rank(scores: Mapping[str, float]) -> list[str]:
    """Keys by descending score, ties broken by key so rankings are reproducible."""
    return sorted(scores, key=lambda c: (-scores[c], c))


@dataclass(frozen=True)
class FitResult:
    weights: dict[str, float]
    metrics: dict[str, dict[str, float]]  # stage or "final" -> summary metrics on the fit set
    n_queries: int


def _objective(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> float:
    qids = [q for q in rankings if any(g > 0 for g in qrels.get(q, {}).values())]
    if not qids:
        return 0.0
    return sum(mrr_at_k(rankings[q], qrels[q]) + 0.5 * ndcg_at_k(rankings[q], qrels[q]) for q in qids) / len(qids)


def weight_grid(step: float = 0.05) -> list[dict[str, float]]:
    """Every weight vector on the simplex over the stages with the given step."""
    n = round(1 / step)
    return [
        {"dense": a / n, "hybrid": b / n, "rerank": (n - a - b) / n}
        for a, b in itertools.product(range(n + 1), repeat=2)
        if a + b <= n
    ]


def fit_weights(
    features: Mapping[str, StageScores],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    step: float = 0.05,
) -> FitResult:
    """Grid-search the weights that maximise MRR@10 (+ ½·NDCG@10 to break ties) on labeled queries.

    ``features`` maps a query id to its stage scores. Several weight vectors often score the same on
    a small set: their mean is returned, which sits inside the flat optimum instead of on its edge.
    """
    labeled = {q: f for q, f in features.items() if any(g > 0 for g in qrels.get(q, {}).values())}
    if not labeled:
        raise ValueError("no query has a relevant article: nothing to fit on")
    best_value, best = -1.0, []
    for w in weight_grid(step):
        value = _objective({q: rank(combine(f, w)) for q, f in labeled.items()}, qrels)
        if value > best_value + 1e-12:
            best_value, best = value, [w]
        elif abs(value - best_value) <= 1e-12:
            best.append(w)
    weights = normalise_weights({s: statistics.fmean(w[s] for w in best) for s in STAGES})
    metrics = stage_metrics(labeled, qrels, weights)
    return FitResult(weights=weights, metrics=metrics, n_queries=len(labeled))


def stage_rankings(stage_scores: StageScores, weights: Mapping[str, float]) -> dict[str, list[str]]:
    """Article rankings of every stage and of the final combination for one query.

    ``rerank`` puts the articles the cross-encoder scored first and the others after them in hybrid
    order, so that its Recall@100 counts the same candidate set as ``hybrid``.
    """
    hybrid = rank(stage_scores.get("hybrid", {}))
    reranked = rank(stage_scores.get("rerank", {}))
    seen = set(reranked)
    return {
        "dense": rank(stage_scores.get("dense", {})),
        "hybrid": hybrid,
        "rerank": reranked + [c for c in hybrid if c not in seen],
        "final": rank(combine(stage_scores, weights)),
    }


def stage_metrics(
    features: Mapping[str, StageScores], qrels: Mapping[str, Mapping[str, int]], weights: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    per_query = {q: stage_rankings(f, weights) for q, f in features.items()}
    return {
        stage: summarise({q: r[stage] for q, r in per_query.items()}, qrels)
        for stage in ("dense", "hybrid", "rerank", "final")
    }


def load_weights_file(path: str | Path) -> dict[str, float]:
    data = json.loads(Path(path).read_text())
    return normalise_weights(data.get("weights", data))


def active_weights() -> tuple[dict[str, float], str]:
    """The weights the app serves with, and where they came from.

    ``SEARCH_WEIGHTS_FILE`` wins, then the newest ``FusionWeights`` row, then the shipped default.
    """
    from . import conf
    from .models import FusionWeights

    override = conf.weights_file()
    if override:
        return load_weights_file(override), f"file:{override}"
    row = FusionWeights.objects.order_by("-created_at", "-id").first()
    if row is not None:
        return normalise_weights(row.weights), f"{row.source}#{row.pk}"
    if DEFAULT_WEIGHTS_FILE.exists():
        return load_weights_file(DEFAULT_WEIGHTS_FILE), "default"
    return dict(FALLBACK_WEIGHTS), "fallback"


def cross_fitted_metrics(
    features: Mapping[str, StageScores],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    folds: int = 5,
    step: float = 0.05,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Metrics of the final ranking when the weights are fitted on this set's own labeled queries,
    without ever scoring a query with weights fitted on it: each of ``folds`` parts (by a hash of the
    query id) is ranked with weights fitted on the other parts. Returns the metrics and each fold's weights.

    This is what a deployment gets after ``fit_search_weights`` on its own labeled queries.
    """
    import hashlib

    labeled = [q for q in features if any(g > 0 for g in qrels.get(q, {}).values())]
    part = {q: int(hashlib.sha1(q.encode()).hexdigest(), 16) % folds for q in labeled}
    rankings: dict[str, list[str]] = {}
    fold_weights = []
    for fold in range(folds):
        train = {q: features[q] for q in labeled if part[q] != fold}
        held = [q for q in labeled if part[q] == fold]
        if not held or not train:
            continue
        weights = fit_weights(train, qrels, step=step).weights
        fold_weights.append(weights)
        for q in held:
            rankings[q] = rank(combine(features[q], weights))
    return summarise(rankings, qrels), fold_weights
