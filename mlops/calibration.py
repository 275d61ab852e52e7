"""Calibration, thresholds and quality metrics for routing scores: plain numpy, no Django, no model library.

The only place that chooses a temperature or a threshold and that defines ECE, accuracy and macro-F1:
every page, command and the promotion decision call these, with the constants below.

* ``fit_calibration`` — what a version stores: its temperature (``fit_temperature``, with the rules
  for small or separable label sets) and per-team thresholds (``choose_thresholds``) on labeled scores.
* ``fit_temperature`` — one temperature T for a model version, fitted by minimising the negative
  log-likelihood of ``softmax(logits / T)`` on labeled tickets (Guo et al., 2017). Rows may have
  different class sets (teams change): pad missing classes with ``-inf``.
* ``choose_thresholds`` / ``best_threshold`` — per class, the lowest calibrated confidence at which the
  tickets routed to it reach a target precision (default 0.9), or the one with the best F1.
* ``expected_calibration_error`` (``reliability_bins``), ``accuracy``, ``macro_f1``,
  ``classification_report`` and ``coverage_at_precision`` — the numbers reports and evaluations show.

>>> import numpy as np
>>> logits = np.array([[4.0, 0.0], [3.0, 1.0], [0.0, 2.0]])
>>> round(fit_temperature(logits, np.array([0, 1, 1])).temperature, 2) > 1    # one mistake: soften
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# The lowest temperature a version gets: below it a small, separable label set only claims certainty.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.25, 50.0
# The search reaches below the floor so that a fit that wants a lower temperature is recognised as one.
_SEARCH_LOW = 0.02
# Labels needed to fit a temperature at all; with fewer, T stays 1.
MIN_CALIBRATION_LABELS = 20
# Labeled tickets a per-team threshold must rest on (fewer for small sets: ``min_support_for``).
MIN_THRESHOLD_SUPPORT = 5
DEFAULT_TARGET_PRECISION = 0.9
# Equal-width confidence bins of the expected calibration error, on every page and in every command.
ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def pad_ragged(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Rows of different lengths as one matrix, missing entries ``-inf`` (probability 0 after softmax)."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), -np.inf, dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = np.max(z, axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def as_dict(self) -> dict[str, Any]:
        return {"method": "temperature", **asdict(self)}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> TemperatureFit:
    """The temperature minimising NLL; searched on log T within [0.02, 50] (no floor: see ``fit_calibration``).

    Raises ``ValueError`` with fewer than two labeled rows or a label outside a row's classes.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError("logits must be (n, k) with one label per row")
    if len(labels) < 2:
        raise ValueError(f"need at least 2 labeled rows to fit a temperature, got {len(labels)}")
    if (
        np.any(labels < 0)
        or np.any(labels >= logits.shape[1])
        or np.any(~np.isfinite(logits[np.arange(len(labels)), labels]))
    ):
        raise ValueError("every label must be one of its row's classes")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(_SEARCH_LOW), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    t = float(np.exp(result.x))
    return TemperatureFit(
        temperature=t,
        n=len(labels),
        nll_before=negative_log_likelihood(logits, labels, 1.0),
        nll_after=negative_log_likelihood(logits, labels, t),
        ece_before=expected_calibration_error(softmax(logits), labels),
        ece_after=expected_calibration_error(softmax(logits, t), labels),
    )


def apply_calibration(logits: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """Calibrated probabilities from logits and a version's stored ``calibration`` (``{}``: T = 1)."""
    temperature = float((calibration or {}).get("temperature", 1.0) or 1.0)
    return softmax(logits, temperature)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Equal-width bins over [0, 1] (the last also holds 1.0): per bin its bounds, count, mean
    confidence and accuracy (None when empty)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    index = np.clip(np.floor(confidence * n_bins).astype(int), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        in_bin = index == b
        count = int(in_bin.sum())
        bins.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "count": count,
                "mean_confidence": float(confidence[in_bin].mean()) if count else None,
                "accuracy": float(correct[in_bin].mean()) if count else None,
            }
        )
    return bins


def calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """ECE = Σ_b (n_b / n) · |accuracy_b − mean confidence_b| over ``reliability_bins``; None with no rows."""
    total = len(np.asarray(confidence))
    if total == 0:
        return None
    bins = [b for b in reliability_bins(confidence, correct, n_bins) if b["count"]]
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["mean_confidence"]) for b in bins))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of the top-1 confidence of ``probs`` against ``labels`` (0.0 with no rows)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    return calibration_error(probs.max(axis=1), probs.argmax(axis=1) == labels, n_bins) or 0.0


def coverage_at_precision(confidence: np.ndarray, correct: np.ndarray, target: float) -> dict[str, float]:
    """The largest share of tickets that one global confidence threshold can decide at ``target`` precision.

    Ranks tickets by confidence and keeps the longest prefix whose precision is >= ``target``;
    ``threshold`` is the confidence of its last ticket (1.0 and coverage 0 when no prefix qualifies).
    An oracle threshold (chosen on the data it is measured on): a curve point, not a deployed setting.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return {"coverage": 0.0, "threshold": 1.0, "precision": float("nan")}
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    # Only cut between distinct confidences: tickets with equal confidence are decided together.
    sorted_conf = confidence[order]
    cut_ok = np.append(sorted_conf[1:] < sorted_conf[:-1], True)
    ok = np.flatnonzero((precision >= target) & cut_ok)
    if len(ok) == 0:
        return {"coverage": 0.0, "threshold": 1.0, "precision": float("nan")}
    last = ok[-1]
    return {
        "coverage": float((last + 1) / len(order)),
        "threshold": float(sorted_conf[last]),
        "precision": float(precision[last]),
    }


def best_threshold(
    conf: np.ndarray, correct: np.ndarray, n_true: int, target: float, mode: str = "precision", min_support: int = 1
) -> tuple[float, float, int] | None:
    """``(threshold, precision, n routed)`` for one class from its routed tickets' confidences and
    whether each is right; None when no threshold qualifies.

    ``precision``: the lowest confidence at which the tickets at or above it are right at least
    ``target`` of the time, with at least ``min_support`` of them; ``f1``: the best F1 of "routed
    to this class" (``n_true``: tickets whose label is the class). Tickets with equal confidence are
    routed together, so a threshold only falls between distinct confidences.
    """
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(conf) == 0:
        return None
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    hits = np.cumsum(correct)
    n = np.arange(1, len(conf) + 1)
    precision = hits / n
    cut_ok = np.append(conf[1:] < conf[:-1], True)
    if mode == "precision":
        ok = np.flatnonzero((precision >= target) & cut_ok & (n >= min_support))
        return (float(conf[ok[-1]]), float(precision[ok[-1]]), int(n[ok[-1]])) if len(ok) else None
    recall = hits / max(n_true, 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    f1 = np.where(cut_ok & (n >= min_support), f1, -1.0)
    best = int(np.argmax(f1))
    return (float(conf[best]), float(precision[best]), int(n[best])) if f1[best] > 0 else None


@dataclass(frozen=True)
class Thresholds:
    per_class: dict[str, float]
    fallback: float
    mode: str
    target_precision: float
    details: dict[str, dict[str, Any]]

    def for_class(self, slug: str) -> float:
        return self.per_class.get(slug, self.fallback)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    mode: str = "precision",
    min_support: int = MIN_THRESHOLD_SUPPORT,
) -> Thresholds:
    """Per-class auto-routing thresholds on calibrated validation probabilities.

    For each class, among validation tickets whose top class it is: ``mode="precision"`` picks the
    lowest confidence at which those above it are right at least ``target_precision`` of the time
    (with at least ``min_support`` of them); ``mode="f1"`` picks the confidence with the best F1 of
    "auto-routed to this class". A class with too few tickets gets the threshold chosen for all
    classes pooled (``fallback``); when even that is out of reach, 1.0 (never auto-route).
    """
    if mode not in ("precision", "f1"):
        raise ValueError(f"mode must be 'precision' or 'f1', got {mode!r}")
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    top = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    correct = (top == labels).astype(np.float64)
    pooled = best_threshold(conf, correct, len(labels), target_precision, mode, min_support)
    fallback = pooled[0] if pooled else 1.0
    per_class: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    for c, slug in enumerate(classes):
        mine = top == c
        found = best_threshold(conf[mine], correct[mine], int((labels == c).sum()), target_precision, mode, min_support)
        if found is None:
            details[slug] = {"threshold": fallback, "source": "pooled", "routed": int(mine.sum())}
            continue
        threshold, precision, n = found
        per_class[slug] = threshold
        details[slug] = {"threshold": threshold, "source": "class", "precision": precision, "n": n}
    return Thresholds(per_class, fallback, mode, target_precision, details)


def evaluate_thresholds(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], thresholds: Thresholds) -> dict:
    """What the chosen thresholds do on held-out data: share auto-routed and their precision."""
    probs = np.asarray(probs, dtype=np.float64)
    top = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    limits = np.array([thresholds.for_class(slug) for slug in classes])
    auto = conf >= limits[top]
    correct = top == np.asarray(labels)
    return {
        "auto_routed": float(auto.mean()) if len(auto) else 0.0,
        "auto_precision": float(correct[auto].mean()) if auto.any() else float("nan"),
        "n": int(len(auto)),
    }


def accuracy(labels: Sequence, predicted: Sequence) -> float | None:
    """Share of rows whose prediction is the label; None with no rows."""
    labels, predicted = np.asarray(labels, dtype=object), np.asarray(predicted, dtype=object)
    return float((labels == predicted).mean()) if len(labels) else None


def macro_f1(labels: Sequence, predicted: Sequence) -> float | None:
    """Macro-averaged F1 across every class seen as a label or a prediction (a class predicted but
    never the label counts with F1 = 0); None with no rows. Classes may be indices or names."""
    from sklearn.metrics import f1_score

    labels, predicted = list(labels), list(predicted)
    if not labels:
        return None
    seen = sorted(set(labels) | set(predicted))
    return float(f1_score(labels, predicted, labels=seen, average="macro", zero_division=0))


def multilabel_macro_f1(y: np.ndarray, predicted: np.ndarray, known: np.ndarray | None = None) -> dict[str, Any]:
    """Macro-F1 over the tags of a multi-label set: each tag's F1 (one-vs-rest, on the cells ``known``
    says a person labelled, all by default), averaged over the tags seen as a label or a prediction there
    (as ``macro_f1`` counts classes). Returns ``{"macro_f1": float | None, "f1_per_tag": [float | None]}``.

    >>> multilabel_macro_f1(np.array([[1, 0], [0, 1]]), np.array([[1, 0], [1, 1]]))["macro_f1"]
    0.8333333333333333
    """
    from sklearn.metrics import f1_score

    y, predicted = np.asarray(y, dtype=bool), np.asarray(predicted, dtype=bool)
    known = np.ones_like(y) if known is None else np.asarray(known, dtype=bool)
    per_tag: list[float | None] = []
    for j in range(y.shape[1]):
        rows = known[:, j]
        truth, guess = y[rows, j], predicted[rows, j]
        seen = truth.any() or guess.any()
        per_tag.append(float(f1_score(truth, guess, zero_division=0)) if seen else None)
    scored = [f for f in per_tag if f is not None]
    return {"macro_f1": float(np.mean(scored)) if scored else None, "f1_per_tag": per_tag}


def classification_report(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, balanced accuracy and per-class precision/recall/F1/support."""
    from sklearn.metrics import balanced_accuracy_score, precision_recall_fscore_support

    labels = np.asarray(labels)
    predicted = np.asarray(predicted)
    index = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(labels, predicted, labels=index, zero_division=0)
    return {
        "accuracy": accuracy(labels.tolist(), predicted.tolist()) or 0.0,
        "macro_f1": macro_f1(labels.tolist(), predicted.tolist()) or 0.0,
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)) if len(labels) else 0.0,
        "per_class": {
            slug: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, slug in enumerate(classes)
        },
    }


# --- What a version stores ------------------------------------------------------------------------
def min_support_for(n_labels: int) -> int:
    """Labeled tickets a team's threshold must rest on: ``MIN_THRESHOLD_SUPPORT``, fewer for small sets."""
    return max(2, min(MIN_THRESHOLD_SUPPORT, n_labels // 10))


@dataclass(frozen=True)
class Calibration:
    """A version's temperature and thresholds, fitted on labeled scores (``fit_calibration``)."""

    fit: TemperatureFit  # the unconstrained fit
    temperature: float  # the temperature the version uses
    nll_after: float  # at ``temperature``
    ece_after: float
    note: str  # why ``temperature`` is not the fit's ("" when it is)
    probabilities: np.ndarray  # calibrated, of the rows it was fitted on
    thresholds: Thresholds

    def as_dict(self) -> dict[str, Any]:
        """The ``ModelVersion.calibration`` record."""
        out = {
            **self.fit.as_dict(),
            "temperature": self.temperature,
            "nll_after": self.nll_after,
            "ece_after": self.ece_after,
        }
        return {**out, "note": self.note} if self.note else out


def fit_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    mode: str = "precision",
    min_support: int | None = None,
    min_labels: int = MIN_CALIBRATION_LABELS,
) -> Calibration:
    """Temperature and per-class thresholds for a version, from its logits on labeled tickets.

    The temperature is ``fit_temperature``'s, except: with fewer than ``min_labels`` labels it stays 1
    (a handful of tickets, often all right, would drive T towards 0), and it never goes below
    ``MIN_TEMPERATURE`` (every ticket right with a margin: the likelihood keeps improving as T → 0).
    Thresholds are ``choose_thresholds`` on the calibrated probabilities, each resting on
    ``min_support`` tickets (default ``min_support_for(len(labels))``).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    fit = fit_temperature(logits, labels)
    temperature, note = fit.temperature, ""
    if len(labels) < min_labels:
        temperature, note = 1.0, f"not fitted: {len(labels)} labels, {min_labels} needed"
    elif fit.temperature < MIN_TEMPERATURE:
        temperature, note = MIN_TEMPERATURE, f"bounded at {MIN_TEMPERATURE}: the labeled predictions are separable"
    probabilities = softmax(logits, temperature)
    if temperature == fit.temperature:
        nll_after, ece_after = fit.nll_after, fit.ece_after
    else:
        nll_after = negative_log_likelihood(logits, labels, temperature)
        ece_after = expected_calibration_error(probabilities, labels)
    thresholds = choose_thresholds(
        probabilities,
        labels,
        list(classes),
        target_precision=target_precision,
        mode=mode,
        min_support=min_support_for(len(labels)) if min_support is None else min_support,
    )
    return Calibration(fit, temperature, nll_after, ece_after, note, probabilities, thresholds)


# --- One-vs-rest calibration of a tag's raw score ------------------------------------------------
def fit_logistic_calibration(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """``p = sigmoid(a · score + b)`` for one tag, fitted on scores and 0/1 labels (Platt, 1999).

    The targets are Platt's smoothed ones ((n+ + 1) / (n+ + 2) and 1 / (n− + 2)), so a small or
    separable label set gives probabilities short of 0 and 1 instead of an unbounded slope. Raises
    ``ValueError`` without at least one positive and one negative label.

    >>> cal = fit_logistic_calibration(np.array([0.1, 0.2, 0.6, 0.7]), np.array([0, 0, 1, 1]))
    >>> bool(apply_logistic_calibration(np.array([0.65]), cal)[0] > 0.5)
    True
    """
    from scipy.optimize import minimize

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 1 or len(scores) != len(labels) or not np.isfinite(scores).all():
        raise ValueError("scores must be finite, one per label")
    positives, negatives = int(labels.sum()), int((1 - labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"need positive and negative labels to calibrate, got {positives} and {negatives}")
    target = np.where(labels == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    # Standardised scores keep the optimiser well-conditioned whatever the scorer's scale.
    mean, std = float(scores.mean()), float(scores.std()) or 1.0
    z = (scores - mean) / std

    def loss(params: np.ndarray) -> float:
        logit = params[0] * z + params[1]
        return float(np.mean(np.logaddexp(0.0, logit) - target * logit))

    result = minimize(loss, np.zeros(2), method="BFGS")
    a, b = float(result.x[0] / std), float(result.x[1] - result.x[0] * mean / std)
    probs = apply_logistic_calibration(scores, {"a": a, "b": b})
    raw = np.clip(scores, 0.0, 1.0)  # the uncalibrated score read as a probability, for the record
    return {
        "method": "logistic",
        "a": a,
        "b": b,
        "n": len(labels),
        "positives": positives,
        "ece_before": calibration_error(raw, labels) or 0.0,
        "ece_after": calibration_error(probs, labels) or 0.0,
    }


def apply_logistic_calibration(scores: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """Calibrated probabilities of raw tag scores under a ``fit_logistic_calibration`` record."""
    from scipy.special import expit

    return expit(float(calibration["a"]) * np.asarray(scores, dtype=np.float64) + float(calibration["b"]))
