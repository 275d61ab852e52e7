from __future__ import annotations

import random

from search.fitting import LabeledSet, guarded_fit
from search.fusion import FusionPolicy


def marks(n: int, *, feedback_knows: bool, dense_quality: float = 0.5, seed: int = 0) -> LabeledSet:
    """Marked tickets with 15 candidate articles, 'r' the helpful one. The feedback stage either
    knows the answer (learned questions of similar tickets) or is dense plus noise."""
    rng = random.Random(seed)
    features, qrels = {}, {}
    for i in range(n):
        candidates = [f"a{j}" for j in range(14)] + ["r"]
        dense = {c: rng.random() for c in candidates}
        if rng.random() < dense_quality:
            dense["r"] = max(dense.values()) + 0.01
        hybrid = {c: v + rng.gauss(0, 0.3) for c, v in dense.items()}
        if feedback_knows:
            feedback = {**dense, "r": max(dense.values()) + 0.2}
        else:
            feedback = {c: v + rng.gauss(0, 0.5) for c, v in dense.items()}
        features[f"t{i}"] = {"dense": dense, "hybrid": hybrid, "rerank": {}, "feedback": feedback}
        qrels[f"t{i}"] = {"r": 1}
    return LabeledSet("feedback", features, qrels, {q: 30 for q in features})


IN_FORCE = FusionPolicy.single({"dense": 0.7, "hybrid": 0.3}).learning()


def test_a_fit_on_marks_that_teach_something_is_served():
    guard = guarded_fit(marks(80, feedback_knows=True), IN_FORCE, step=0.25)
    assert guard.chosen == "fitted"
    assert guard.held_out["fitted"] > guard.held_out["in force"]
    assert guard.policy.long["feedback"] >= 0.5


def test_marks_that_teach_nothing_leave_the_policy_in_force():
    guard = guarded_fit(
        marks(80, feedback_knows=False, dense_quality=0.9, seed=1), FusionPolicy.single({"dense": 1}), step=0.25
    )
    assert guard.chosen in ("in force", "dense")
    assert guard.held_out["in force"] >= max(guard.held_out[s] for s in ("hybrid", "feedback"))


def test_the_served_ranking_is_never_below_the_best_single_stage_on_held_out_marks():
    # A policy in force that trusts the noisy stage: the guard serves something at least as good as dense.
    bad = FusionPolicy.single({"hybrid": 1.0, "feedback": 0.0})
    guard = guarded_fit(marks(80, feedback_knows=False, dense_quality=0.9, seed=2), bad, step=0.25)
    assert guard.chosen != "in force"
    served = guard.held_out["fitted"] if guard.chosen == "fitted" else guard.held_out[guard.chosen]
    assert served >= guard.held_out["dense"]


def test_too_few_marked_tickets_fit_nothing():
    guard = guarded_fit(marks(10, feedback_knows=True), IN_FORCE, min_queries=30)
    assert (guard.chosen, guard.held_out, guard.n_queries) == ("in force", {}, 10)


def test_a_stage_that_scored_nothing_is_neither_weighed_nor_served_alone():
    guard = guarded_fit(marks(80, feedback_knows=True, seed=4), IN_FORCE, step=0.25)
    assert "rerank" not in guard.held_out
    assert guard.policy.long["rerank"] == 0.0 and guard.policy.short["rerank"] == 0.0


def test_marks_that_would_lower_the_ranking_leave_it_as_it_was_before_anything_was_learned():
    # The feedback stage is noise here; the policy in force leans on it, the same policy unlearned does not.
    leaning = FusionPolicy.single({"dense": 0.6, "hybrid": 0.4}).learning()
    guard = guarded_fit(marks(80, feedback_knows=False, dense_quality=0.9, seed=5), leaning, step=0.25)
    assert guard.held_out["nothing learned"] > guard.held_out["in force"]
    assert guard.chosen in ("nothing learned", "dense", "fitted")
    if guard.chosen == "nothing learned":
        assert guard.policy.long["feedback"] == 0.0 and guard.policy.long["dense"] == 0.6


def test_a_fit_must_win_on_held_out_marks_by_more_than_the_noise_of_the_comparison(monkeypatch):
    """The fitted policy has a dozen free weights: a gain within FIT_MIN_STANDARD_ERRORS standard errors
    of the per-ticket differences is chance, and the policy in force (or nothing learned) stays."""
    from search import fitting

    taught = marks(40, feedback_knows=True, seed=3)
    guard = guarded_fit(taught, IN_FORCE, step=0.25)
    gain, noise = guard.held_out["fitted gain"], guard.held_out["fitted noise"]
    assert guard.chosen == "fitted" and gain > noise > 0
    # The same marks, asked for a gain beyond its noise: the fit is not served, nor a worse ranking.
    monkeypatch.setattr(fitting, "FIT_MIN_STANDARD_ERRORS", 1.01 * gain / (noise / fitting.FIT_MIN_STANDARD_ERRORS))
    strict = guarded_fit(taught, IN_FORCE, step=0.25)
    assert strict.chosen != "fitted"
    served = strict.held_out[strict.chosen]
    assert served == max(strict.held_out[k] for k in ("in force", "nothing learned", "dense", "hybrid", "feedback"))
