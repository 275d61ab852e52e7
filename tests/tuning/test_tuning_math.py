"""The pure computations of learning/tuning.py and learning/quality.py against computations written out by hand."""

from __future__ import annotations

import math
import random

import pytest

from learning import quality, tuning
from mlops import calibration

TEAMS = ["a", "b", "c"]


def random_outcomes(n: int = 400, seed: int = 1) -> tuple[list[tuple[int, str, float, str | None]], list[dict]]:
    rng = random.Random(seed)
    rows, scores = [], []
    for i in range(n):
        raw = [rng.random() for _ in TEAMS]
        total = sum(raw)
        probs = {t: round(r / total, 2) for t, r in zip(TEAMS, raw, strict=True)}
        top = max(sorted(probs), key=probs.get)
        label = None if rng.random() < 0.3 else (top if rng.random() < probs[top] + 0.2 else rng.choice(TEAMS))
        rows.append((i, top, probs[top], label))
        scores.append(probs)
    return rows, scores


def direct_what_if(rows, team, theta):
    routed = [r for r in rows if r[1] == team and r[2] >= theta]
    labeled = [r for r in routed if r[3] is not None]
    correct = [r for r in labeled if r[3] == team]
    label_count = sum(1 for r in rows if r[3] == team)
    predicted = sum(1 for r in rows if r[1] == team)
    return {
        "routed": len(routed),
        "correct": len(correct),
        "wrong": len(labeled) - len(correct),
        "unlabeled": len(routed) - len(labeled),
        "precision": len(correct) / len(labeled) if labeled else None,
        "recall": len(correct) / label_count if label_count else None,
        "coverage": len(routed) / predicted if predicted else None,
        "label_count": label_count,
        "predicted": predicted,
    }


@pytest.mark.parametrize("theta", [0.0, 0.34, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0])
@pytest.mark.parametrize("team", TEAMS)
def test_what_if_equals_a_direct_count(team, theta):
    rows, _ = random_outcomes()
    got = tuning.what_if(tuning.Outcomes.from_rows(rows), team, theta, mode="auto")
    expected = direct_what_if(rows, team, theta)
    for key, value in expected.items():
        assert getattr(got, key) == value, key
    assert got.auto_routed == expected["routed"]
    assert got.auto_routed_wrong == expected["wrong"]


def test_what_if_routes_nothing_outside_auto_mode_but_still_measures_the_threshold():
    rows, _ = random_outcomes()
    outcomes = tuning.Outcomes.from_rows(rows)
    suggest = tuning.what_if(outcomes, "a", 0.5, mode="suggest")
    auto = tuning.what_if(outcomes, "a", 0.5, mode="auto")
    assert suggest.auto_routed == 0 and suggest.auto_routed_wrong == 0
    assert suggest.routed == auto.routed > 0
    assert suggest.precision == auto.precision


def test_what_if_says_none_rather_than_zero_when_there_is_nothing_to_measure():
    outcomes = tuning.Outcomes.from_rows([(1, "a", 0.95, None)])
    w = tuning.what_if(outcomes, "a", 0.9)
    assert (w.routed, w.precision, w.recall, w.f1) == (1, None, None, None)
    assert w.coverage == 1.0
    empty = tuning.what_if(tuning.Outcomes.from_rows([]), "a", 0.5)
    assert (empty.window, empty.precision, empty.coverage) == (0, None, None)


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), "abc", None])
def test_what_if_refuses_thresholds_outside_the_unit_interval(bad):
    with pytest.raises(ValueError, match="threshold"):
        tuning.what_if(tuning.Outcomes.from_rows([]), "a", bad)


def test_every_curve_point_equals_the_what_if_at_its_threshold():
    rows, _ = random_outcomes()
    outcomes = tuning.Outcomes.from_rows(rows)
    for team in TEAMS:
        points = tuning.precision_recall_points(outcomes, team)
        expected_thresholds = sorted({r[2] for r in rows if r[1] == team and r[3] is not None})
        assert [p.threshold for p in points] == expected_thresholds
        for p in points:
            d = direct_what_if(rows, team, p.threshold)
            assert (p.precision, p.recall, p.coverage, p.routed) == (
                d["precision"],
                d["recall"],
                d["coverage"],
                d["routed"],
            )


def direct_suggestion(rows, team, target, min_support):
    for theta in sorted({r[2] for r in rows if r[1] == team and r[3] is not None}):
        d = direct_what_if(rows, team, theta)
        if d["correct"] + d["wrong"] >= min_support and d["precision"] >= target:
            return theta
    return None


@pytest.mark.parametrize("target", [0.5, 0.7, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("min_support", [1, 10, 30])
def test_suggested_threshold_is_the_smallest_reaching_the_target(target, min_support):
    rows, _ = random_outcomes()
    outcomes = tuning.Outcomes.from_rows(rows)
    for team in TEAMS:
        got = tuning.suggest_threshold(outcomes, team, target, min_support)
        assert got.threshold == direct_suggestion(rows, team, target, min_support)
        if got.ok:
            assert got.precision >= target and got.support >= min_support


def test_an_unreachable_target_says_the_best_precision_and_where():
    rows = [(1, "a", 0.9, "a"), (2, "a", 0.8, "b"), (3, "a", 0.95, "b"), (4, "a", 0.6, "a")]
    s = tuning.suggest_threshold(tuning.Outcomes.from_rows(rows), "a", 0.99, min_support=2)
    assert not s.ok and s.threshold is None
    # θ=0.6: 2/4, θ=0.8: 1/3, θ=0.9: 1/2 -> best 0.5, at the lowest such θ
    assert (s.best_precision, s.best_threshold) == (0.5, 0.6)
    assert "No threshold reaches precision 0.990" in s.message
    assert "best is 0.500 at θ = 0.600" in s.message


def test_a_team_without_labeled_predictions_gets_a_clear_message():
    rows = [(1, "a", 0.9, None), (2, "b", 0.8, "b")]
    s = tuning.suggest_threshold(tuning.Outcomes.from_rows(rows), "a", 0.9)
    assert not s.ok
    assert "no labeled predictions" in s.message


def test_too_few_labels_for_the_minimum_support_is_said_so():
    rows = [(1, "a", 0.9, "a"), (2, "a", 0.8, "a")]
    s = tuning.suggest_threshold(tuning.Outcomes.from_rows(rows), "a", 0.9, min_support=5)
    assert not s.ok and "only 2 labeled predictions" in s.message


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5, float("nan")])
def test_target_precision_must_be_within_zero_and_one(target):
    with pytest.raises(ValueError, match="target precision"):
        tuning.suggest_threshold(tuning.Outcomes.from_rows([]), "a", target)


def direct_ece(conf, correct, n_bins=15):
    bins: dict[int, list[tuple[float, bool]]] = {}
    for c, ok in zip(conf, correct, strict=True):
        b = min(int(math.floor(c * n_bins)), n_bins - 1)
        bins.setdefault(b, []).append((c, ok))
    total = len(conf)
    ece = 0.0
    for members in bins.values():
        mean_conf = sum(c for c, _ in members) / len(members)
        acc = sum(ok for _, ok in members) / len(members)
        ece += len(members) / total * abs(acc - mean_conf)
    return ece, bins


def test_overall_reliability_and_ece_equal_a_direct_computation():
    rows, _ = random_outcomes()
    labeled = [r for r in rows if r[3] is not None]
    expected, bins = direct_ece([r[2] for r in labeled], [r[1] == r[3] for r in labeled])
    got = quality.overall_reliability(tuning.Outcomes.from_rows(rows))
    assert got.ece == pytest.approx(expected, abs=1e-12)
    assert got.count == len(labeled)
    assert sum(b.count for b in got.bins) == len(labeled)
    for b, result in enumerate(got.bins):
        assert result.count == len(bins.get(b, []))


def test_team_reliability_is_one_vs_rest_on_the_team_score():
    rows, scores = random_outcomes()
    outcomes = tuning.Outcomes.from_rows(rows, scores)
    labeled = [i for i, r in enumerate(rows) if r[3] is not None]
    expected, _ = direct_ece([scores[i]["b"] for i in labeled], [rows[i][3] == "b" for i in labeled])
    assert quality.team_reliability(outcomes, "b").ece == pytest.approx(expected, abs=1e-12)


def test_reliability_puts_a_confidence_of_one_in_the_last_bin():
    result = quality.reliability([1.0, 0.0, 0.1], [True, False, True])
    assert result.bins[-1].count == 1 and result.bins[0].count == 1 and result.bins[1].count == 1


def test_confusion_matrix_counts_labels_against_top_teams():
    rows, _ = random_outcomes()
    got = quality.confusion(tuning.Outcomes.from_rows(rows), ["a", "b", "c", "d"])
    assert got.classes == ["a", "b", "c", "d"]
    for i, label in enumerate(got.classes):
        for j, predicted in enumerate(got.classes):
            assert got.matrix[i][j] == sum(1 for r in rows if r[3] == label and r[1] == predicted)


def test_accuracy_and_macro_f1_equal_a_direct_computation():
    rows, _ = random_outcomes()
    labeled = [r for r in rows if r[3] is not None]
    outcomes = tuning.Outcomes.from_rows(rows)
    assert calibration.accuracy(*quality.labels_and_tops(outcomes)) == sum(r[1] == r[3] for r in labeled) / len(labeled)
    f1s = []
    for team in sorted({r[1] for r in labeled} | {r[3] for r in labeled}):
        tp = sum(1 for r in labeled if r[1] == team and r[3] == team)
        fp = sum(1 for r in labeled if r[1] == team and r[3] != team)
        fn = sum(1 for r in labeled if r[1] != team and r[3] == team)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    assert calibration.macro_f1(*quality.labels_and_tops(outcomes)) == pytest.approx(sum(f1s) / len(f1s), abs=1e-12)


def test_helpfulness_share_and_mrr_of_the_first_helpful_article():
    marks = [
        (1, 1, False),
        (1, 3, True),
        (1, 2, True),  # first helpful at rank 2 -> 1/2
        (2, 1, True),  # -> 1
        (3, 2, False),  # none helpful -> 0
        (4, None, True),  # no rank: counts for the share only
    ]
    h = quality.helpfulness(marks)
    assert (h.marks, h.helpful) == (6, 4)
    assert h.helpful_share == 4 / 6
    assert h.tickets == 3
    assert h.mrr == pytest.approx((0.5 + 1 + 0) / 3)
    assert quality.helpfulness([]).mrr is None


def test_quality_counts_auto_routes_and_needs_triage_from_stored_decisions():
    rows = [
        quality.DecisionRow(1, "a", 0.95, "auto_routed", "a", "a"),
        quality.DecisionRow(2, "a", 0.92, "auto_routed", "a", "b"),
        quality.DecisionRow(3, "b", 0.91, "auto_routed", "b", None),
        quality.DecisionRow(4, "b", 0.6, "suggested", "b", "b"),
        quality.DecisionRow(5, "a", 0.3, "abstained", None, "b"),
    ]
    q = quality.quality(rows)
    assert q.predictions == 5 and q.labeled == 4
    assert q.auto_route_rate == 3 / 5
    assert q.auto_route_precision == 1 / 2
    assert q.needs_triage_rate == 2 / 5
    assert q.accuracy == 2 / 4


def test_ece_is_the_same_number_model_evaluation_reports():
    import numpy as np

    from mlops.calibration import expected_calibration_error

    rows, scores = random_outcomes()
    labeled = [i for i, r in enumerate(rows) if r[3] is not None]
    # Distinct scores per row, so argmax and the fixture's top team agree.
    probs = np.array([[scores[i][t] + 1e-9 * (t == rows[i][1]) for t in TEAMS] for i in labeled])
    labels = np.array([TEAMS.index(rows[i][3]) for i in labeled])
    ours = quality.overall_reliability(tuning.Outcomes.from_rows([(i, r[1], r[2], r[3]) for i, r in enumerate(rows)]))
    assert ours.ece == pytest.approx(expected_calibration_error(probs, labels), abs=1e-6)


def test_plots_are_labelled_svg_and_drawn_once_per_set_of_numbers():
    from learning import plots

    rows, _ = random_outcomes()
    result = quality.overall_reliability(tuning.Outcomes.from_rows(rows))
    svg = plots.reliability_svg(result, "overall")
    assert svg.startswith("<svg ") and 'role="img"' in svg and 'aria-label="Reliability diagram: overall"' in svg
    assert plots.reliability_svg(result, "overall") is svg
    assert plots.reliability_svg(result, "team a") != svg
