"""Fitting the fusion policy on labeled queries or agents' marks, and guarding what is served.

``fit_policy`` grid-searches the stage weights (one vector for short queries, one for longer ones)
that maximise the *worst* fit set's margin over its own best single stage. ``cross_fitted_metrics``
scores a policy fitted on a set's own queries without ever ranking a query with weights fitted on
it. ``guarded_fit`` is what a deployment runs on its marks: it fits on them, and serves the fit only
if it beats, on marks held out of each fold, both the policy already in force and every single stage;
otherwise the policy in force (or, if even that loses, the best single stage).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .fusion import (
    BASE_STAGES,
    DEFAULT_SHORT_MAX_WORDS,
    STAGES,
    FusionPolicy,
    StageScores,
    candidate_articles,
    combine,
    rank,
    stage_metrics,
    stage_rankings,
    standardise,
    weights_for,
)
from .metrics import mrr_at_k, ndcg_at_k, summarise


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


def weight_grid(step: float = 0.05, stages: Sequence[str] = BASE_STAGES) -> list[dict[str, float]]:
    """Every weight vector on the simplex over ``stages`` with the given step (other stages 0).

    >>> len(weight_grid(0.5)), len(weight_grid(0.5, STAGES))
    (6, 10)
    """
    n = round(1 / step)
    vectors = []
    for head in itertools.product(range(n + 1), repeat=len(stages) - 1):
        if sum(head) <= n:
            parts = (*head, n - sum(head))
            vectors.append({s: (parts[stages.index(s)] / n if s in stages else 0.0) for s in STAGES})
    return vectors


_LOG2 = np.log2(np.arange(2, 12))  # discounts of ranks 1..10


def _query_objective(features: StageScores, relevant: Mapping[str, int], grid: np.ndarray) -> np.ndarray:
    """MRR@10 + ½·NDCG@10 of one query under every weight vector of ``grid`` (rows over ``STAGES``).

    The same ranking as ``rank(combine(features, w))`` — z-scores over the candidates, stages that
    produced nothing dropped, ties broken by article key — for all weight vectors in one product.
    Vectors that give ``feedback`` no weight rank over ``candidate_articles(..., feedback_weighed=False)``.
    """
    present = np.array([bool(features.get(s)) for s in STAGES])
    w = grid * present
    sums = w.sum(axis=1, keepdims=True)
    w = np.where(sums > 0, w / np.where(sums > 0, sums, 1), present / max(present.sum(), 1))
    weighed = w[:, STAGES.index("feedback")] > 0
    out = _objective_over(features, candidate_articles(features), relevant, w, present)
    unweighed = candidate_articles(features, feedback_weighed=False)
    if not weighed.all() and len(unweighed) != len(candidate_articles(features)):
        out[~weighed] = _objective_over(features, unweighed, relevant, w[~weighed], present)
    return out


def _objective_over(
    features: StageScores, candidates: list[str], relevant: Mapping[str, int], w: np.ndarray, present: np.ndarray
) -> np.ndarray:
    if not candidates:
        return np.zeros(len(w))
    z = np.zeros((len(candidates), len(STAGES)))
    for j, stage in enumerate(STAGES):
        if present[j]:
            z[:, j] = list(standardise(features[stage], candidates).values())
    scores = z @ w.T  # candidates × weight vectors
    order = np.argsort(-scores, axis=0, kind="stable")[:10]  # candidates are key-sorted: ties by key
    gains = np.array([relevant.get(c, 0) for c in candidates], dtype=float)
    top = gains[order]  # 10 × weight vectors
    first = np.argmax(top > 0, axis=0)
    mrr = np.where(top.max(axis=0) > 0, 1.0 / (first + 1), 0.0)
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    ndcg = (top / _LOG2[: len(top), None]).sum(axis=0) / idcg if idcg > 0 else np.zeros(len(w))
    return mrr + 0.5 * ndcg


def _stage_objective(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> float:
    return statistics.fmean(mrr_at_k(r, qrels[q]) + 0.5 * ndcg_at_k(r, qrels[q]) for q, r in rankings.items())


def fit_policy(
    sets: Sequence[LabeledSet],
    *,
    step: float = 0.05,
    short_max_words: int | None = DEFAULT_SHORT_MAX_WORDS,
    min_regime_queries: int = 10,
    stages: Sequence[str] = BASE_STAGES,
    prefer_dense: float | None = None,
) -> FitResult:
    """Grid-search the fusion policy whose worst fit set beats its own best single stage by the most.

    The objective of a ranking is MRR@10 + ½·NDCG@10 (the NDCG half breaks MRR ties). For each set,
    its margin is the final ranking's objective minus that of the set's best stage (dense, hybrid or
    rerank, whichever scores highest on it); the fitted policy maximises the smallest margin over the
    sets — with one set, simply its objective. Queries of at most ``short_max_words`` words are
    ranked with the ``short`` vector and the others with ``long``; both are searched jointly. When
    fewer than ``min_regime_queries`` queries fall on one side (or ``short_max_words`` is ``None``)
    a single vector is fitted. Several policies often tie on small sets: their mean is returned,
    which sits inside the flat optimum instead of on its edge. ``stages``: the stages weighed (and
    competed against); ``feedback`` only where the sets have learned questions.

    ``prefer_dense``: among the policies within this much of the best worst-set margin, the one that
    leans most on the dense stage (then the tied ones' mean, as above). What is fitted on a few help
    centres carries over to a new one best where it stays close to dense, the stage that varies
    least between help centres; so a default trades a sliver of fit margin for that.
    """
    sets = [s for s in sets if s.labeled()]
    if not sets:
        raise ValueError("no query has a relevant article: nothing to fit on")
    grid_dicts = weight_grid(step, stages)
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
        rankings = {q: stage_rankings(labeled_set.features[q], {}) for q in qids}
        best = max(_stage_objective({q: r[s] for q, r in rankings.items()}, labeled_set.qrels) for s in stages)
        bests[labeled_set.name] = best
        if gated:  # margin[i, j]: short vector i, long vector j
            margin = (short_sum[:, None] + long_sum[None, :]) / len(qids) - best
        else:
            margin = long_sum / len(qids) - best
        margins = margin if margins is None else np.minimum(margins, margin)
    top = float(margins.max())
    columns = (0, 1) if gated else (0, 0)
    ties = np.argwhere(margins >= top - 1e-9)
    if prefer_dense is not None:
        near = np.argwhere(margins >= top - prefer_dense)
        dense_col = STAGES.index("dense")
        lean = grid[near[:, columns[0]], dense_col] + grid[near[:, columns[1]], dense_col]
        ties = near[lean >= lean.max() - 1e-9]
        top = float(min(margins[tuple(t)] for t in ties))
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
            w = weights_for(policy, labeled_set.words.get(q), labeled_set.features[q])
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


def cross_fitted_metrics(
    features: Mapping[str, StageScores],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    folds: int = 5,
    step: float = 0.05,
    words: Mapping[str, int] | None = None,
    short_max_words: int | None = None,
    stages: Sequence[str] = BASE_STAGES,
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
        policy = fit_policy([fit_set], step=step, short_max_words=short_max_words, stages=stages).policy
        fold_policies.append(policy)
        for q in held:
            rankings[q] = rank(combine(features[q], weights_for(policy, words.get(q), features[q])))
    return summarise(rankings, qrels), fold_policies


@dataclass(frozen=True)
class GuardedFit:
    """The policy to serve after fitting on marks, which candidate it is, and why."""

    policy: FusionPolicy
    chosen: str  # "fitted", "in force", or the stage served alone
    held_out: dict[str, float]  # mean objective on held-out marks of each candidate ("fitted" cross-fitted)
    n_queries: int
    fit: FitResult | None = None


def policy_objective(features: StageScores, relevant: Mapping[str, int], weights: Mapping[str, float]) -> float:
    """MRR@10 + ½·NDCG@10 of one query ranked by ``combine(features, weights)``."""
    return float(_query_objective(features, relevant, np.array([[weights.get(s, 0.0) for s in STAGES]]))[0])


# How many standard errors of the per-ticket gain (paired, on held-out marks) a fitted policy must win by
# before it replaces the policy in force (chosen on the Parcelwise dev queries and bank marks; see
# search/README.md).
FIT_MIN_STANDARD_ERRORS = 1.0


def guarded_fit(
    marks: LabeledSet,
    in_force: FusionPolicy,
    *,
    folds: int = 5,
    step: float = 0.1,
    short_max_words: int | None = DEFAULT_SHORT_MAX_WORDS,
    min_queries: int = 30,
    stages: Sequence[str] = STAGES,
) -> GuardedFit:
    """Fit a policy on a deployment's own marks and decide, on marks held out of the fit, what to serve.

    Each fold of the marked tickets is ranked by a policy fitted on the other folds; the fitted policy
    is served only if that cross-fitted ranking scores above the policy ``in_force``, above the same
    policy with nothing learned (its feedback weight back on dense: what the deployment served before
    any mark), and at least as well as every stage alone on the same tickets. Else the better of the
    two in-force variants stays, unless a single stage beats both, in which case that stage is served
    alone: the served ranking is never below the best single stage, nor below the ranking without
    feedback, on held-out marks. Fewer than ``min_queries`` marked tickets: nothing is fitted and the
    policy in force stays.
    """
    qids = marks.labeled()
    if len(qids) < min_queries:
        return GuardedFit(in_force, "in force", {}, len(qids))
    # Only stages that scored something (no reranker here: no rerank stage to weigh or to serve alone).
    stages = tuple(s for s in stages if any(marks.features[q].get(s) for q in qids))

    def per_ticket(weights_of) -> np.ndarray:
        return np.array([policy_objective(marks.features[q], marks.qrels[q], weights_of(q)) for q in qids])

    def mean(weights_of) -> float:
        return float(per_ticket(weights_of).mean())

    unlearned = in_force.unlearned()
    kept = {
        "in force": per_ticket(lambda q: weights_for(in_force, marks.words.get(q), marks.features[q])),
        "nothing learned": per_ticket(lambda q: weights_for(unlearned, marks.words.get(q), marks.features[q])),
    }
    held_out = {name: float(values.mean()) for name, values in kept.items()}
    for stage in stages:
        held_out[stage] = mean(lambda q, stage=stage: {stage: 1.0})
    part = {q: int(hashlib.sha1(q.encode()).hexdigest(), 16) % folds for q in qids}
    fold_policy: dict[int, FusionPolicy] = {}
    for fold in range(folds):
        train = [q for q in qids if part[q] != fold]
        if not train or len(train) == len(qids):
            continue
        subset = LabeledSet("train", {q: marks.features[q] for q in train}, marks.qrels, marks.words)
        fold_policy[fold] = fit_policy([subset], step=step, short_max_words=short_max_words, stages=stages).policy
    if any(part[q] not in fold_policy for q in qids):  # a fold with nothing to fit on: nothing to judge
        return GuardedFit(in_force, "in force", held_out, len(qids))
    fitted_per_ticket = per_ticket(lambda q: weights_for(fold_policy[part[q]], marks.words.get(q)))
    held_out["fitted"] = float(fitted_per_ticket.mean())
    # Better than what is served (with or without what was learned) by more than the noise of the
    # comparison, no worse than any stage alone. The fit has a dozen free weights: on a help centre
    # where marks teach little (Parcelwise's stream tickets: +0.0025 ± 0.010 over the policy in force
    # on 153 held-out marks) it wins by chance, and serving it lost 0.011 MRR@10 on the dev queries.
    in_place = max(kept, key=lambda name: held_out[name])
    served = held_out[in_place]
    gain = fitted_per_ticket - kept[in_place]
    noise = FIT_MIN_STANDARD_ERRORS * float(gain.std(ddof=1)) / math.sqrt(len(gain)) if len(gain) > 1 else 0.0
    held_out["fitted gain"], held_out["fitted noise"] = float(gain.mean()), noise
    if held_out["fitted"] > served + noise and held_out["fitted"] >= max(held_out[s] for s in stages):
        fitted = fit_policy([marks], step=step, short_max_words=short_max_words, stages=stages)
        return GuardedFit(fitted.policy, "fitted", held_out, len(qids), fitted)
    best_stage = max(stages, key=lambda s: held_out[s])
    if served >= held_out[best_stage]:
        if held_out["in force"] >= held_out["nothing learned"]:
            return GuardedFit(in_force, "in force", held_out, len(qids))
        return GuardedFit(unlearned, "nothing learned", held_out, len(qids))
    return GuardedFit(FusionPolicy.single({best_stage: 1.0}), best_stage, held_out, len(qids))
