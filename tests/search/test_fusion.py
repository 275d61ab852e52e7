from __future__ import annotations

import random

import pytest

from search.fusion import (
    active_weights,
    combine,
    cross_fitted_metrics,
    fit_weights,
    normalise_weights,
    stage_rankings,
    standardise,
)
from search.metrics import mrr_at_k, ndcg_at_k, recall_at_k, summarise
from search.models import FusionWeights


def test_metrics_match_hand_computed_values():
    assert mrr_at_k(["a", "b", "c"], {"c": 1}) == pytest.approx(1 / 3)
    assert mrr_at_k(["a"] * 11 + ["c"], {"c": 1}) == 0.0
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1}) == pytest.approx(1.0)
    assert recall_at_k(["a"], {"a": 1, "b": 1, "c": 0}) == 0.5
    summary = summarise({"q1": ["a"], "q2": ["b"], "q3": ["x"]}, {"q1": {"a": 1}, "q2": {"a": 1}})
    assert summary["queries"] == 2 and summary["mrr@10"] == 0.5


def test_standardise_gives_unscored_candidates_the_lowest_score():
    z = standardise({"a": 3.0, "b": 1.0}, ["a", "b", "c"])
    assert z["b"] == z["c"] < z["a"]


def test_combine_drops_stages_that_produced_nothing():
    scores = {"dense": {"a": 0.9, "b": 0.1}, "hybrid": {"a": 0.1, "b": 0.9}, "rerank": {}}
    only_dense = combine(scores, {"dense": 1, "hybrid": 0, "rerank": 5})
    assert only_dense["a"] > only_dense["b"]
    assert normalise_weights({"dense": 0, "hybrid": 0}) == pytest.approx(
        {s: 1 / 3 for s in ("dense", "hybrid", "rerank")}
    )


def _synthetic(n: int, rerank_helps: bool, seed: int = 0):
    """Queries with 20 candidates; the relevant one is 'r'. Dense is decent, the reranker either
    nearly perfect or misleading."""
    rng = random.Random(seed)
    features, qrels = {}, {}
    for q in range(n):
        cands = ["r"] + [f"d{i}" for i in range(19)]
        dense = {c: rng.gauss(0, 1) + (1.5 if c == "r" else 0) for c in cands}
        hybrid = {c: dense[c] + rng.gauss(0, 1) for c in cands}
        if rerank_helps:
            rerank = {c: rng.gauss(0, 1) + (4 if c == "r" else 0) for c in cands}
        else:
            rerank = {c: rng.gauss(0, 1) - (1.0 if c == "r" else 0) for c in cands}
        features[f"q{q}"] = {"dense": dense, "hybrid": hybrid, "rerank": rerank}
        qrels[f"q{q}"] = {"r": 1}
    return features, qrels


def test_fitted_weights_trust_an_informative_reranker():
    features, qrels = _synthetic(80, rerank_helps=True)
    fit = fit_weights(features, qrels, step=0.1)
    assert fit.weights["rerank"] >= 0.5
    assert fit.metrics["final"]["mrr@10"] >= max(fit.metrics[s]["mrr@10"] for s in ("dense", "hybrid", "rerank"))


def test_fitted_weights_fall_back_to_dense_and_hybrid_when_the_reranker_hurts():
    features, qrels = _synthetic(80, rerank_helps=False, seed=1)
    fit = fit_weights(features, qrels, step=0.1)
    assert fit.weights["rerank"] <= 0.1
    assert fit.metrics["final"]["mrr@10"] >= fit.metrics["dense"]["mrr@10"]
    held_out, held_qrels = _synthetic(80, rerank_helps=False, seed=2)
    rankings = {q: stage_rankings(f, fit.weights) for q, f in held_out.items()}
    final = summarise({q: r["final"] for q, r in rankings.items()}, held_qrels)["mrr@10"]
    rerank = summarise({q: r["rerank"] for q, r in rankings.items()}, held_qrels)["mrr@10"]
    assert final > rerank


def test_the_newest_stored_weights_are_served(db, settings):
    assert active_weights()[1] in ("default", "fallback")
    FusionWeights.objects.create(weights={"dense": 2, "hybrid": 1, "rerank": 1}, source="feedback")
    weights, source = active_weights()
    assert weights == pytest.approx({"dense": 0.5, "hybrid": 0.25, "rerank": 0.25})
    assert source.startswith("feedback#")


def test_cross_fitting_never_ranks_a_query_with_weights_fitted_on_it():

    features, qrels = _synthetic(60, rerank_helps=True, seed=3)
    metrics, fold_weights = cross_fitted_metrics(features, qrels, folds=3, step=0.25)
    assert len(fold_weights) == 3 and metrics["queries"] == 60
    assert all(w["rerank"] >= 0.5 for w in fold_weights)
    assert metrics["mrr@10"] > 0.8
