"""The served ranking: a weighted sum of the stages' per-query standardised scores.

A cross-encoder does not always beat the bi-encoder it reranks (on one bank help centre, MaxP dense
scored MRR@10 0.89 and reranking 0.86), so the app never trusts one stage blindly. Each article gets
its dense (MaxP cosine), hybrid (MaxP reciprocal-rank-fusion) and rerank (MaxP cross-encoder logit)
scores; each is standardised over the query's candidate articles and the final score is
``w_dense·z_dense + w_hybrid·z_hybrid + w_rerank·z_rerank``. The weights are fitted on labeled
queries (``fit_search_weights``) or agents' helpful marks: where the reranker hurts, its fitted weight
falls towards 0 and the ranking falls back to the dense/hybrid stages.

Which stage is worth trusting depends on the query's length: ms-marco rerankers were trained on
short web queries and read a one-line subject well, while a long, chatty ticket body is where the
bi-encoder's MaxP and the lexical stage hold up better. A ``FusionPolicy`` therefore keeps two
weight vectors, one for queries of at most ``short_max_words`` words and one for longer ones (a
single vector when ``short_max_words`` is ``None``). ``fit_policy`` fits both on one or several
labeled sets at once, maximising the *worst* set's margin over its own best single stage, so that
the served ranking is not bought on one kind of query at the expense of another.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metrics import mrr_at_k, ndcg_at_k, summarise

STAGES = ("dense", "hybrid", "rerank")
DEFAULT_WEIGHTS_FILE = Path(__file__).resolve().parent / "default_weights.json"
# Used only when neither a fitted row nor the shipped file exists.
FALLBACK_WEIGHTS = {"dense": 0.4, "hybrid": 0.2, "rerank": 0.4}
DEFAULT_SHORT_MAX_WORDS = 12

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


def query_words(text: str) -> int:
    """The length a ``FusionPolicy`` reads: whitespace-separated words of the query as searched."""
    return len(text.split())


@dataclass(frozen=True)
class FusionPolicy:
    """Stage weights by query length: ``short`` for queries of at most ``short_max_words`` words,
    ``long`` for the others; one vector for every query when ``short_max_words`` is ``None``.

    >>> p = FusionPolicy.from_json({"short_max_words": 12, "short": {"rerank": 1}, "long": {"dense": 1}})
    >>> p.for_query("card declined")["rerank"], p.for_words(40)["dense"]
    (1.0, 1.0)
    """

    short: dict[str, float]
    long: dict[str, float]
    short_max_words: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "short", normalise_weights(self.short))
        object.__setattr__(self, "long", normalise_weights(self.long))
        if self.short_max_words is not None and (not isinstance(self.short_max_words, int) or self.short_max_words < 1):
            raise ValueError(f"short_max_words must be a positive integer or null, got {self.short_max_words!r}")

    @classmethod
    def single(cls, weights: Mapping[str, float]) -> FusionPolicy:
        return cls(short=dict(weights), long=dict(weights), short_max_words=None)

    @classmethod
    def from_json(cls, data: Mapping) -> FusionPolicy:
        """A policy from ``{"short_max_words", "short", "long"}`` or a flat ``{"dense", "hybrid", "rerank"}``."""
        if not isinstance(data, Mapping):
            raise ValueError("fusion weights must be a JSON object")
        if "short" in data or "long" in data:
            if not (isinstance(data.get("short"), Mapping) and isinstance(data.get("long"), Mapping)):
                raise ValueError('a length-gated policy needs both "short" and "long" weight objects')
            return cls(short=dict(data["short"]), long=dict(data["long"]), short_max_words=data.get("short_max_words"))
        unknown = set(data) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown fusion stage(s) {sorted(unknown)}; stages are {list(STAGES)}")
        return cls.single(data)

    def to_json(self) -> dict:
        if self.short_max_words is None:
            return dict(self.long)
        return {"short_max_words": self.short_max_words, "short": dict(self.short), "long": dict(self.long)}

    def regime(self, words: int) -> str:
        """``short`` or ``long`` for a gated policy, ``all`` for a single vector."""
        if self.short_max_words is None:
            return "all"
        return "short" if words <= self.short_max_words else "long"

    def for_words(self, words: int) -> dict[str, float]:
        return dict(self.short if self.regime(words) == "short" else self.long)

    def for_query(self, text: str) -> dict[str, float]:
        return self.for_words(query_words(text))

    def describe(self) -> str:
        def fmt(w: Mapping[str, float]) -> str:
            return ", ".join(f"{k}={v:.2f}" for k, v in w.items())

        if self.short_max_words is None:
            return fmt(self.long)
        return f"≤{self.short_max_words} words: {fmt(self.short)}; longer: {fmt(self.long)}"


Weights = Mapping[str, float] | FusionPolicy


def weights_for(weights: Weights, words: int | None) -> dict[str, float]:
    """The weight vector ``weights`` (a vector or a policy) gives a query of ``words`` words."""
    if isinstance(weights, FusionPolicy):
        if words is None:
            if weights.short_max_words is not None:
                raise ValueError("a length-gated fusion policy needs the query's length")
            return dict(weights.long)
        return weights.for_words(words)
    return dict(weights)


@dataclass(frozen=True)
class LabeledSet:
    """One labeled query set to fit on: stage scores and qrels per query id, and each query's length."""

    name: str
    features: Mapping[str, StageScores]
    qrels: Mapping[str, Mapping[str, int]]
    words: Mapping[str, int] = field(default_factory=dict)

    def labeled(self) -> list[str]:
        return [q for q in self.features if any(g > 0 for g in self.qrels.get(q, {}).values())]


@dataclass(frozen=True)
class FitResult:
    policy: FusionPolicy
    metrics: dict[str, dict[str, float]]  # stage or "final" -> summary metrics over every fit set
    n_queries: int
    per_set: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # set -> stage -> metrics
    margin: float = 0.0  # worst set's final objective minus its best stage's

    @property
    def weights(self) -> dict[str, float]:
        """The single weight vector (the long-query one of a length-gated policy)."""
        return dict(self.policy.long)


def weight_grid(step: float = 0.05) -> list[dict[str, float]]:
    """Every weight vector on the simplex over the stages with the given step."""
    n = round(1 / step)
    return [
        {"dense": a / n, "hybrid": b / n, "rerank": (n - a - b) / n}
        for a, b in itertools.product(range(n + 1), repeat=2)
        if a + b <= n
    ]


_LOG2 = np.log2(np.arange(2, 12))  # discounts of ranks 1..10


def _query_objective(features: StageScores, relevant: Mapping[str, int], grid: np.ndarray) -> np.ndarray:
    """MRR@10 + ½·NDCG@10 of one query under every weight vector of ``grid`` (rows over ``STAGES``).

    The same ranking as ``rank(combine(features, w))`` — z-scores over the candidates, stages that
    produced nothing dropped, ties broken by article key — for all weight vectors in one product.
    """
    candidates = sorted({c for scores in features.values() for c in scores})
    if not candidates:
        return np.zeros(len(grid))
    present = np.array([bool(features.get(s)) for s in STAGES])
    z = np.zeros((len(candidates), len(STAGES)))
    for j, stage in enumerate(STAGES):
        if present[j]:
            z[:, j] = list(standardise(features[stage], candidates).values())
    w = grid * present
    sums = w.sum(axis=1, keepdims=True)
    w = np.where(sums > 0, w / np.where(sums > 0, sums, 1), present / max(present.sum(), 1))
    scores = z @ w.T  # candidates × weight vectors
    order = np.argsort(-scores, axis=0, kind="stable")[:10]  # candidates are key-sorted: ties by key
    gains = np.array([relevant.get(c, 0) for c in candidates], dtype=float)
    top = gains[order]  # 10 × weight vectors
    first = np.argmax(top > 0, axis=0)
    mrr = np.where(top.max(axis=0) > 0, 1.0 / (first + 1), 0.0)
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    ndcg = (top / _LOG2[: len(top), None]).sum(axis=0) / idcg if idcg > 0 else np.zeros(len(grid))
    return mrr + 0.5 * ndcg


def _stage_objective(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> float:
    return statistics.fmean(mrr_at_k(r, qrels[q]) + 0.5 * ndcg_at_k(r, qrels[q]) for q, r in rankings.items())


def fit_policy(
    sets: Sequence[LabeledSet],
    *,
    step: float = 0.05,
    short_max_words: int | None = DEFAULT_SHORT_MAX_WORDS,
    min_regime_queries: int = 10,
) -> FitResult:
    """Grid-search the fusion policy whose worst fit set beats its own best single stage by the most.

    The objective of a ranking is MRR@10 + ½·NDCG@10 (the NDCG half breaks MRR ties). For each set,
    its margin is the final ranking's objective minus that of the set's best stage (dense, hybrid or
    rerank, whichever scores highest on it); the fitted policy maximises the smallest margin over the
    sets — with one set, simply its objective. Queries of at most ``short_max_words`` words are
    ranked with the ``short`` vector and the others with ``long``; both are searched jointly. When
    fewer than ``min_regime_queries`` queries fall on one side (or ``short_max_words`` is ``None``)
    a single vector is fitted. Several policies often tie on small sets: their mean is returned,
    which sits inside the flat optimum instead of on its edge.
    """
    sets = [s for s in sets if s.labeled()]
    if not sets:
        raise ValueError("no query has a relevant article: nothing to fit on")
    grid_dicts = weight_grid(step)
    grid = np.array([[w[s] for s in STAGES] for w in grid_dicts])
    if short_max_words is not None and any(q not in s.words for s in sets for q in s.labeled()):
        raise ValueError("a length-gated fit needs every query's length (LabeledSet.words)")
    n_short = sum(1 for s in sets for q in s.labeled() if short_max_words and s.words[q] <= short_max_words)
    n_all = sum(len(s.labeled()) for s in sets)
    gated = short_max_words is not None and min(n_short, n_all - n_short) >= min_regime_queries

    bests = {}
    margins = None
    for labeled_set in sets:
        qids = labeled_set.labeled()
        short_sum = np.zeros(len(grid))
        long_sum = np.zeros(len(grid))
        for q in qids:
            value = _query_objective(labeled_set.features[q], labeled_set.qrels[q], grid)
            if gated and labeled_set.words[q] <= short_max_words:
                short_sum += value
            else:
                long_sum += value
        rankings = {q: stage_rankings(labeled_set.features[q], FALLBACK_WEIGHTS) for q in qids}
        best = max(_stage_objective({q: r[s] for q, r in rankings.items()}, labeled_set.qrels) for s in STAGES)
        bests[labeled_set.name] = best
        if gated:  # margin[i, j]: short vector i, long vector j
            margin = (short_sum[:, None] + long_sum[None, :]) / len(qids) - best
        else:
            margin = long_sum / len(qids) - best
        margins = margin if margins is None else np.minimum(margins, margin)
    top = float(margins.max())
    ties = np.argwhere(margins >= top - 1e-9)
    columns = (0, 1) if gated else (0, 0)
    short_vec, long_vec = grid[ties[:, columns[0]]].mean(axis=0), grid[ties[:, columns[1]]].mean(axis=0)
    policy = _policy(short_vec, long_vec, short_max_words if gated else None)
    margin = _worst_margin(policy, sets, bests)
    if margin < top - 1e-9:
        # The mean of the tied optima fell off the plateau: take the tied one nearest to it.
        nearest = ties[
            np.argmin(
                ((grid[ties[:, columns[0]]] - short_vec) ** 2).sum(1)
                + ((grid[ties[:, columns[1]]] - long_vec) ** 2).sum(1)
            )
        ]
        policy = _policy(grid[nearest[columns[0]]], grid[nearest[columns[1]]], short_max_words if gated else None)
        margin = _worst_margin(policy, sets, bests)

    per_set = {s.name: stage_metrics(s.features, s.qrels, policy, s.words) for s in sets}
    merged_features = {(s.name, q): s.features[q] for s in sets for q in s.labeled()}
    merged_qrels = {(s.name, q): s.qrels[q] for s in sets for q in s.labeled()}
    merged_words = {(s.name, q): s.words.get(q) for s in sets for q in s.labeled()}
    metrics = stage_metrics(merged_features, merged_qrels, policy, merged_words if gated else None)
    return FitResult(policy=policy, metrics=metrics, n_queries=n_all, per_set=per_set, margin=margin)


def _policy(short: np.ndarray, long: np.ndarray, short_max_words: int | None) -> FusionPolicy:
    def as_dict(vector: np.ndarray) -> dict[str, float]:
        return {s: float(vector[j]) for j, s in enumerate(STAGES)}

    if short_max_words is None:
        return FusionPolicy.single(as_dict(long))
    return FusionPolicy(short=as_dict(short), long=as_dict(long), short_max_words=short_max_words)


def _worst_margin(policy: FusionPolicy, sets: Sequence[LabeledSet], bests: Mapping[str, float]) -> float:
    """The smallest, over ``sets``, of the policy's final objective minus the set's best stage's."""
    worst = math.inf
    for labeled_set in sets:
        values = []
        for q in labeled_set.labeled():
            w = weights_for(policy, labeled_set.words.get(q))
            values.append(
                _query_objective(labeled_set.features[q], labeled_set.qrels[q], np.array([[w[s] for s in STAGES]]))[0]
            )
        worst = min(worst, statistics.fmean(values) - bests[labeled_set.name])
    return float(worst)


def fit_weights(
    features: Mapping[str, StageScores],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    step: float = 0.05,
) -> FitResult:
    """One weight vector for every query, maximising MRR@10 (+ ½·NDCG@10) on one labeled set."""
    return fit_policy([LabeledSet("fit", features, qrels)], step=step, short_max_words=None)


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
    features: Mapping[str, StageScores],
    qrels: Mapping[str, Mapping[str, int]],
    weights: Weights,
    words: Mapping[str, int | None] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every stage and of the final ranking; ``words`` (query lengths) serve a policy."""
    words = words or {}
    per_query = {q: stage_rankings(f, weights_for(weights, words.get(q))) for q, f in features.items()}
    return {
        stage: summarise({q: r[stage] for q, r in per_query.items()}, qrels)
        for stage in ("dense", "hybrid", "rerank", "final")
    }


def load_weights_file(path: str | Path) -> FusionPolicy:
    """A policy from a JSON file: a ``fit_search_weights --output`` file or bare weights."""
    try:
        data = json.loads(Path(path).read_text())
        return FusionPolicy.from_json(data.get("weights", data) if isinstance(data, dict) else data)
    except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a fusion weights file ({exc})") from None


def active_weights() -> tuple[FusionPolicy, str]:
    """The fusion policy the app serves with, and where it came from.

    ``SEARCH_WEIGHTS_FILE`` wins, then the newest ``FusionWeights`` row, then the shipped default.
    """
    from . import conf
    from .models import FusionWeights

    override = conf.weights_file()
    if override:
        return load_weights_file(override), f"file:{override}"
    row = FusionWeights.objects.order_by("-created_at", "-id").first()
    if row is not None:
        return FusionPolicy.from_json(row.weights), f"{row.source}#{row.pk}"
    if DEFAULT_WEIGHTS_FILE.exists():
        return load_weights_file(DEFAULT_WEIGHTS_FILE), "default"
    return FusionPolicy.single(FALLBACK_WEIGHTS), "fallback"


def cross_fitted_metrics(
    features: Mapping[str, StageScores],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    folds: int = 5,
    step: float = 0.05,
    words: Mapping[str, int] | None = None,
    short_max_words: int | None = None,
) -> tuple[dict[str, float], list[FusionPolicy]]:
    """Metrics of the final ranking when the policy is fitted on this set's own labeled queries,
    without ever scoring a query with weights fitted on it: each of ``folds`` parts (by a hash of the
    query id) is ranked with a policy fitted on the other parts. Returns the metrics and each fold's policy.

    This is what a deployment gets after ``fit_search_weights`` on its own labeled queries.
    """
    words = words or {}
    labeled = [q for q in features if any(g > 0 for g in qrels.get(q, {}).values())]
    part = {q: int(hashlib.sha1(q.encode()).hexdigest(), 16) % folds for q in labeled}
    rankings: dict[str, list[str]] = {}
    fold_policies = []
    for fold in range(folds):
        train = [q for q in labeled if part[q] != fold]
        held = [q for q in labeled if part[q] == fold]
        if not held or not train:
            continue
        fit_set = LabeledSet(
            "train", {q: features[q] for q in train}, qrels, {q: words[q] for q in train if q in words}
        )
        policy = fit_policy([fit_set], step=step, short_max_words=short_max_words).policy
        fold_policies.append(policy)
        for q in held:
            rankings[q] = rank(combine(features[q], weights_for(policy, words.get(q))))
    return summarise(rankings, qrels), fold_policies
