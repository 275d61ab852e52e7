"""Temperature scaling, per-class thresholds and the evaluation numbers, on data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.calibration import (
    choose_thresholds,
    classification_report,
    coverage_at_precision,
    evaluate_thresholds,
    expected_calibration_error,
    fit_temperature,
    pad_ragged,
    softmax,
)


def sample(n: int = 4000, k: int = 5, overconfidence: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(true logits); the model reports logits ``overconfidence`` times too sharp."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 1.5, size=(n, k))
    probs = softmax(true_logits)
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return true_logits * overconfidence, labels


def test_temperature_scaling_recovers_the_overconfidence_and_lowers_ece():
    logits, labels = sample()
    fit = fit_temperature(logits, labels)
    assert fit.temperature == pytest.approx(3.0, rel=0.1)
    assert fit.nll_after < fit.nll_before
    assert fit.ece_after < fit.ece_before / 2
    assert fit.ece_after < 0.03


def test_temperature_scaling_leaves_a_calibrated_model_alone():
    logits, labels = sample(overconfidence=1.0, seed=1)
    assert fit_temperature(logits, labels).temperature == pytest.approx(1.0, rel=0.1)


def test_rows_with_different_class_sets_are_padded_out_of_the_softmax():
    padded = pad_ragged([[2.0, 0.0], [1.0, 0.0, -1.0]])
    probs = softmax(padded)
    assert probs[0, 2] == 0.0
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    fit = fit_temperature(padded, np.array([0, 1]))
    assert np.isfinite(fit.nll_after)


def test_temperature_needs_labels_inside_each_rows_classes():
    with pytest.raises(ValueError, match="at least 2"):
        fit_temperature(np.zeros((1, 3)), np.array([0]))
    with pytest.raises(ValueError, match="one of its row's classes"):
        fit_temperature(pad_ragged([[1.0, 0.0], [1.0, 0.0, 0.0]]), np.array([2, 2]))


def test_expected_calibration_error_of_a_perfectly_calibrated_and_an_overconfident_model():
    logits, labels = sample(overconfidence=1.0, seed=2)
    assert expected_calibration_error(softmax(logits), labels) < 0.03
    assert expected_calibration_error(softmax(logits * 3), labels) > 0.1


def test_thresholds_reach_the_target_precision_per_class_on_validation_data():
    logits, labels = sample(n=6000, k=4, overconfidence=1.0, seed=3)
    probs = softmax(logits)
    classes = ["a", "b", "c", "d"]
    thresholds = choose_thresholds(probs, labels, classes, target_precision=0.9, min_support=20)
    assert set(thresholds.per_class) == set(classes)
    top, conf = probs.argmax(1), probs.max(1)
    for c, slug in enumerate(classes):
        routed = (top == c) & (conf >= thresholds.per_class[slug])
        assert (labels[routed] == c).mean() >= 0.9
        assert routed.sum() >= 20
    outcome = evaluate_thresholds(probs, labels, classes, thresholds)
    assert outcome["auto_precision"] >= 0.9 and 0 < outcome["auto_routed"] < 1


def test_a_class_with_too_few_tickets_gets_the_pooled_threshold_and_an_impossible_target_gets_one():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 0, 0, 1, 1])
    thresholds = choose_thresholds(probs, labels, ["a", "b"], target_precision=0.9, min_support=2)
    assert thresholds.per_class == {"a": 0.7}
    assert thresholds.for_class("b") == thresholds.fallback == 0.7
    never = choose_thresholds(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([1, 1]), ["a", "b"], min_support=1)
    assert never.for_class("a") == 1.0


def test_f1_mode_picks_the_threshold_with_the_best_f1():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45]])
    labels = np.array([0, 0, 1, 0])
    thresholds = choose_thresholds(probs, labels, ["a", "b"], mode="f1", min_support=1)
    # Routing all four tickets to "a" gives precision 3/4 and recall 1 (F1 0.86); stopping at 0.9 gives 1 and 2/3 (0.8).
    assert thresholds.per_class["a"] == 0.55


def test_coverage_at_precision_is_the_largest_confident_share_at_that_precision():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0], dtype=bool)
    assert coverage_at_precision(confidence, correct, 0.9) == {"coverage": 0.5, "threshold": 0.9, "precision": 1.0}
    assert coverage_at_precision(confidence, correct, 0.75)["coverage"] == pytest.approx(5 / 6)
    assert coverage_at_precision(confidence, np.zeros(6, bool), 0.9)["coverage"] == 0.0


def test_tickets_with_equal_confidence_are_decided_together():
    result = coverage_at_precision(np.array([0.9, 0.9, 0.5]), np.array([True, False, False]), 0.9)
    assert result["coverage"] == 0.0


def test_classification_report_has_the_headline_and_per_class_numbers():
    report = classification_report(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), ["a", "b", "c"])
    assert report["accuracy"] == 0.75
    assert report["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert report["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
