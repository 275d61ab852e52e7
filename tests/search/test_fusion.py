from __future__ import annotations

import json
import random

import numpy as np
import pytest

from search.fitting import (
    LabeledSet,
    _query_objective,
    cross_fitted_metrics,
    fit_policy,
    fit_weights,
    weight_grid,
)
from search.fusion import (
    STAGES,
    FusionPolicy,
    active_weights,
    combine,
    load_weights_file,
    normalise_weights,
    rank,
    stage_rankings,
    standardise,
    weights_for,
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
    assert normalise_weights({"dense": 0, "hybrid": 0}) == pytest.approx({s: 1 / 4 for s in STAGES})


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
    policy, source = active_weights()
    assert policy.short_max_words is None
    # Written without a feedback weight: its dense weight serves dense-with-learned-questions.
    assert policy.for_words(3) == pytest.approx({"dense": 0, "hybrid": 0.25, "rerank": 0.25, "feedback": 0.5})
    assert source.startswith("feedback#")


def test_cross_fitting_never_ranks_a_query_with_weights_fitted_on_it():

    features, qrels = _synthetic(60, rerank_helps=True, seed=3)
    metrics, fold_weights = cross_fitted_metrics(features, qrels, folds=3, step=0.25)
    assert len(fold_weights) == 3 and metrics["queries"] == 60
    assert all(p.long["rerank"] >= 0.5 for p in fold_weights)
    assert metrics["mrr@10"] > 0.8


def _two_kinds(n: int, seed: int):
    """Short queries where the reranker is right and long ones where it misleads, as two sets."""
    short_f, short_q = _synthetic(n, rerank_helps=True, seed=seed)
    long_f, long_q = _synthetic(n, rerank_helps=False, seed=seed + 1)
    short = LabeledSet("short", short_f, short_q, {q: 4 for q in short_f})
    long = LabeledSet("long", long_f, long_q, {q: 40 for q in long_f})
    return short, long


def test_the_vectorised_objective_ranks_exactly_like_combine():
    features, qrels = _synthetic(30, rerank_helps=True, seed=5)
    features["q0"]["rerank"] = {}  # a query the reranker did not score
    features["q1"] = {"dense": {"a": 1.0, "r": 1.0}, "hybrid": {"a": 0.5, "r": 0.5}, "rerank": {}}  # ties
    grid_dicts = weight_grid(0.25)
    grid = np.array([[w[s] for s in STAGES] for w in grid_dicts])
    for q, f in features.items():
        fast = _query_objective(f, qrels[q], grid)
        for i, w in enumerate(grid_dicts):
            ranking = rank(combine(f, w))
            assert fast[i] == pytest.approx(mrr_at_k(ranking, qrels[q]) + 0.5 * ndcg_at_k(ranking, qrels[q]))


def test_a_length_gated_policy_fits_each_kind_of_query_and_beats_every_stage_on_both_sets():
    short, long = _two_kinds(60, seed=7)
    fit = fit_policy([short, long], step=0.1, short_max_words=12)
    assert fit.policy.short_max_words == 12
    assert fit.policy.short["rerank"] >= 0.5 and fit.policy.long["rerank"] <= 0.2
    assert fit.margin >= -1e-9
    for name, metrics in fit.per_set.items():
        best = max(metrics[s]["mrr@10"] for s in STAGES)
        assert metrics["final"]["mrr@10"] >= best, name
    # One vector for both cannot serve both kinds as well.
    single = fit_policy([short, long], step=0.1, short_max_words=None)
    assert single.policy.short_max_words is None and single.margin < fit.margin


def test_too_few_queries_on_one_side_fit_a_single_vector():
    short, long = _two_kinds(40, seed=11)
    few = LabeledSet("few", dict(list(short.features.items())[:3]), short.qrels, short.words)
    fit = fit_policy([few, long], step=0.25, short_max_words=12, min_regime_queries=10)
    assert fit.policy.short_max_words is None
    with pytest.raises(ValueError, match="length"):
        fit_policy([LabeledSet("no lengths", short.features, short.qrels)], step=0.25, short_max_words=12)


def test_policies_round_trip_through_json_and_refuse_nonsense(tmp_path):
    policy = FusionPolicy(short={"rerank": 3, "dense": 1}, long={"dense": 1}, short_max_words=12)
    assert policy.short == pytest.approx({"dense": 0.25, "hybrid": 0.0, "rerank": 0.75, "feedback": 0.0})
    assert FusionPolicy.from_json(json.loads(json.dumps(policy.to_json()))) == policy
    assert policy.for_query("card declined twice") == policy.short
    assert policy.for_query(" ".join(["word"] * 13)) == policy.long
    assert policy.regime(12) == "short" and FusionPolicy.single({"dense": 1}).regime(3) == "all"
    flat = FusionPolicy.from_json({"dense": 2, "hybrid": 2})
    assert flat.short_max_words is None and flat.for_words(1) == pytest.approx(
        {"dense": 0, "hybrid": 0.5, "rerank": 0, "feedback": 0.5}
    )
    for bad in ({"short": {"dense": 1}}, {"dense": 1, "bm25": 1}, {"short_max_words": 0, "short": {}, "long": {}}):
        with pytest.raises(ValueError):
            FusionPolicy.from_json(bad)
    (tmp_path / "w.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a fusion weights file"):
        load_weights_file(tmp_path / "w.json")
    with pytest.raises(ValueError, match="length"):
        weights_for(policy, None)


def test_a_stored_policy_is_served_by_query_length(db):
    FusionWeights.objects.create(
        weights={"short_max_words": 5, "short": {"rerank": 1}, "long": {"dense": 1}}, source="labeled"
    )
    policy, source = active_weights()
    assert source.startswith("labeled#")
    assert policy.for_query("refund please")["rerank"] == 1.0
    assert policy.for_query("I was charged twice for the same order last week")["feedback"] == 1.0


def test_cross_fitting_a_gated_policy_uses_query_lengths():
    short, long = _two_kinds(40, seed=13)
    features = {**{f"s{q}": f for q, f in short.features.items()}, **{f"l{q}": f for q, f in long.features.items()}}
    qrels = {q: {"r": 1} for q in features}
    words = {q: 4 if q.startswith("s") else 40 for q in features}
    metrics, policies = cross_fitted_metrics(features, qrels, folds=2, step=0.25, words=words, short_max_words=12)
    assert metrics["queries"] == 80 and all(p.short_max_words == 12 for p in policies)
    assert all(p.short["rerank"] >= 0.5 and p.long["rerank"] <= 0.25 for p in policies)


def test_queries_the_cross_encoder_did_not_read_are_ranked_with_the_policys_unreranked_vectors():
    policy = FusionPolicy.from_json(
        {"dense": 0.2, "hybrid": 0.3, "rerank": 0.5, "unreranked": {"dense": 0.9, "hybrid": 0.1}}
    )
    reranked = {"dense": {"a": 1.0}, "hybrid": {"a": 1.0}, "rerank": {"a": 2.0}}
    not_reranked = {"dense": {"a": 1.0}, "hybrid": {"a": 1.0}, "rerank": {}}
    assert weights_for(policy, 5, reranked)["rerank"] == pytest.approx(0.5)
    assert weights_for(policy, 5, not_reranked) == pytest.approx(
        {"dense": 0.0, "hybrid": 0.1, "rerank": 0.0, "feedback": 0.9}
    )
    assert FusionPolicy.from_json(json.loads(json.dumps(policy.to_json()))) == policy
    assert "not reranked" in policy.describe()


def test_a_policy_without_feedback_weight_ranks_exactly_as_if_nothing_was_learned():
    """Articles only learned questions found join the candidates only while the feedback stage counts:
    otherwise they shift every stage's z-scores and 'as if nothing was learned' ranks differently."""
    learned = {
        "dense": {"a": 0.42, "b": 0.50, "c": 0.89},
        "hybrid": {"a": 0.033, "b": 0.020, "c": 0.016},
        "feedback": {"a": 0.42, "b": 0.50, "c": 0.89, "x": 0.95, "y": 0.94, "z": 0.93},
    }
    nothing = {**learned, "feedback": dict(learned["dense"])}
    policy = {"dense": 0.5, "hybrid": 0.5, "feedback": 0.0}
    assert rank(combine(learned, policy)) == rank(combine(nothing, policy)) == ["a", "c", "b"]
    # Over every stage's articles (as before), x, y and z at each stage's floor put c first.
    everyone = sorted({c for scores in learned.values() for c in scores})
    old = {
        c: 0.5 * standardise(learned["dense"], everyone)[c] + 0.5 * standardise(learned["hybrid"], everyone)[c]
        for c in "abc"
    }
    assert rank(old) == ["c", "a", "b"]
    # Where the feedback stage counts, the articles its questions found are candidates.
    assert set(combine(learned, {**policy, "feedback": 0.1})) == {"a", "b", "c", "x", "y", "z"}
    # The vectorised objective of the fit agrees, on the vectors with and without feedback weight.
    grid_dicts = weight_grid(0.25, STAGES)
    grid = np.array([[w[s] for s in STAGES] for w in grid_dicts])
    fast = _query_objective(learned, {"a": 1}, grid)
    for i, w in enumerate(grid_dicts):
        ranking = rank(combine(learned, w))
        assert fast[i] == pytest.approx(mrr_at_k(ranking, {"a": 1}) + 0.5 * ndcg_at_k(ranking, {"a": 1}))
