"""Calibration and thresholds for routing scores: plain numpy, no Django, no model library.

* ``fit_temperature`` — one temperature T for a model version, fitted by minimising the negative
  log-likelihood of ``softmax(logits / T)`` on labeled tickets (Guo et al., 2017). Rows may have
  different class sets (teams change): pad missing classes with ``-inf``.
* ``choose_thresholds`` — per class, the lowest calibrated confidence at which the tickets routed to
  it reach a target precision (default 0.9) on a validation split, or the one with the best F1.
* ``expected_calibration_error``, ``coverage_at_precision`` and ``classification_report`` — the
  numbers ``evaluate_routing`` reports.

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

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.02, 50.0


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
    """The temperature minimising NLL; searched on log T, bounded to [0.02, 50].

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
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
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


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-1 confidence over ``n_bins`` equal-width bins (weighted mean |accuracy − confidence|)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


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


def _best_threshold(conf: np.ndarray, correct: np.ndarray, n_true: int, target: float, mode: str, min_support: int):
    """Threshold for one class from its routed tickets' confidences; None when no threshold qualifies."""
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
    target_precision: float = 0.9,
    mode: str = "precision",
    min_support: int = 5,
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
    pooled = _best_threshold(conf, correct, len(labels), target_precision, mode, min_support)
    fallback = pooled[0] if pooled else 1.0
    per_class: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    for c, slug in enumerate(classes):
        mine = top == c
        found = _best_threshold(
            conf[mine], correct[mine], int((labels == c).sum()), target_precision, mode, min_support
        )
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


def classification_report(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, balanced accuracy and per-class precision/recall/F1/support."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_fscore_support

    labels = np.asarray(labels)
    predicted = np.asarray(predicted)
    index = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(labels, predicted, labels=index, zero_division=0)
    present = s > 0
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f[present].mean()) if present.any() else 0.0,
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)) if len(labels) else 0.0,
        "per_class": {
            slug: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, slug in enumerate(classes)
        },
    }
