"""Evaluating a tag set on labelled files: the numbers ``evaluate_tags`` reports (no database needed).

A file has one ticket a line, ``{"text": ..., "tags": [...]}``; a line's tags outside the set are
ignored (a file labels every set at once). In a single-label set each line must carry exactly one of
the set's tags. Per tag: precision, recall, F1, ECE before calibration (the scorer's own reading) and
after, and the coverage at precision 0.9; over the set: micro- and macro-F1 (and, single-label,
accuracy and the set's macro-F1 as routing defines it).

With a dev file, each tag's logistic calibration and its threshold for the target precision
(``mlops.calibration.best_threshold``, the chooser of team thresholds) are fitted on dev and applied
to test; without one, the calibrations and thresholds stored on the tags are used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops.calibration import (
    DEFAULT_TARGET_PRECISION,
    apply_logistic_calibration,
    best_threshold,
    calibration_error,
    coverage_at_precision,
    fit_logistic_calibration,
    macro_f1,
    min_support_for,
)

from .scoring import SetScores, TagSetSpec, score_tag_set

COVERAGE_PRECISION = 0.9


class EvaluationInputError(ValueError):
    """A file ``evaluate_tags`` cannot read, with the line that is wrong."""


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    y: np.ndarray  # (n, k) 0/1


def read_labelled(path: str | Path, spec: TagSetSpec) -> Labelled:
    slugs = [t.slug for t in spec.tags]
    texts, rows = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationInputError(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise EvaluationInputError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise EvaluationInputError(f'{path}:{number}: needs a non-empty "text"')
        tags = row.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise EvaluationInputError(f'{path}:{number}: "tags" must be a list of tag slugs')
        mine = [slugs.index(t) for t in tags if t in slugs]
        if spec.single_label and len(mine) != 1:
            raise EvaluationInputError(
                f"{path}:{number}: a single-label set ({spec.slug}) needs exactly one of {', '.join(slugs)} "
                f"per line, got {len(mine)}"
            )
        y = np.zeros(len(slugs), dtype=np.int64)
        y[mine] = 1
        texts.append(row["text"])
        rows.append(y)
    if not texts:
        raise EvaluationInputError(f"{path}: no tickets")
    return Labelled(texts, np.array(rows))


def fit_on_dev(scores: SetScores, dev: Labelled) -> list[dict[str, Any] | None]:
    """Each tag's logistic calibration on dev (None for a tag dev has no positive or no negative of)."""
    out = []
    for j in range(dev.y.shape[1]):
        try:
            out.append({**fit_logistic_calibration(scores.features[:, j], dev.y[:, j]), "source": "dev"})
        except ValueError:
            out.append(None)
    return out


def calibrated(features: np.ndarray, calibrations: list[dict[str, Any] | None], single_label: bool) -> np.ndarray:
    probs = np.full(features.shape, np.nan)
    for j, cal in enumerate(calibrations):
        if cal is not None:
            probs[:, j] = apply_logistic_calibration(features[:, j], cal)
    if single_label:
        probs = probs / np.nansum(probs, axis=1, keepdims=True)
    return probs


def choose_tag_thresholds(
    probs: np.ndarray, y: np.ndarray, single_label: bool, target: float = DEFAULT_TARGET_PRECISION
) -> list[float | None]:
    """Per tag, the lowest calibrated probability at which tickets tagged are right ``target`` of the time.

    In a single-label set only tickets whose best tag it is count (as routing counts a team's tickets).
    None where no threshold reaches the target.
    """
    out: list[float | None] = []
    for j in range(y.shape[1]):
        rows = np.nan_to_num(probs, nan=-1).argmax(axis=1) == j if single_label else np.ones(len(y), dtype=bool)
        found = best_threshold(
            probs[rows, j], y[rows, j], int(y[:, j].sum()), target, "precision", min_support_for(len(y))
        )
        out.append(found[0] if found else None)
    return out


def predicted(probs: np.ndarray, thresholds: list[float | None], single_label: bool) -> np.ndarray:
    safe = np.nan_to_num(probs, nan=-1.0)
    limits = np.array([1.01 if t is None else t for t in thresholds])
    above = safe >= limits[None, :]
    if single_label:
        best = np.zeros_like(above)
        best[np.arange(len(safe)), safe.argmax(axis=1)] = True
        return above & best
    return above


def _prf(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int((pred & (truth == 1)).sum())
    n_pred, n_true = int(pred.sum()), int(truth.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "predicted": n_pred, "support": n_true}


def tag_report(probs: np.ndarray, native: np.ndarray, y: np.ndarray, pred: np.ndarray, j: int) -> dict[str, Any]:
    scored = ~np.isnan(probs[:, j])
    coverage = coverage_at_precision(probs[scored, j], y[scored, j], COVERAGE_PRECISION) if scored.any() else None
    positives = int(y[:, j].sum())
    return {
        **_prf(pred[:, j], y[:, j]),
        "ece_before": calibration_error(native[:, j], y[:, j]),
        "ece_after": calibration_error(probs[scored, j], y[scored, j]) if scored.any() else None,
        # Oracle threshold on this file: a point of the curve, not a deployed setting.
        "coverage_at_precision_0.9": coverage["coverage"] if coverage else 0.0,
        "recall_at_precision_0.9": (coverage["coverage"] * len(y) / positives) if coverage and positives else 0.0,
    }


def evaluate(
    spec: TagSetSpec,
    test: Labelled,
    scorer: Any,
    *,
    dev: Labelled | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
) -> dict[str, Any]:
    """The report of one scorer on one tag set (module docstring)."""
    scores = score_tag_set(test.texts, spec, scorer)
    fitted = None
    if dev is not None and spec.method != "language":
        dev_scores = score_tag_set(dev.texts, spec, scorer)
        fitted = fit_on_dev(dev_scores, dev)
        probs = calibrated(scores.features, fitted, spec.single_label)
        dev_probs = calibrated(dev_scores.features, fitted, spec.single_label)
        thresholds = choose_tag_thresholds(dev_probs, dev.y, spec.single_label, target_precision)
        source = "dev"
        # One calibration for every tag of the set at once: what a new tag of this kind starts with.
        pooled = {**fit_logistic_calibration(dev_scores.features.ravel(), dev.y.ravel()), "source": "pooled-dev"}
    else:
        probs = scores.probabilities
        thresholds = [t.threshold for t in spec.tags]
        source = "stored"
    # Deployed thresholds tag a ticket only when its tag is sure enough; the argmax alone is what
    # macro-F1 and accuracy of a single-label set read (every ticket gets its best tag).
    pred = predicted(probs, thresholds, spec.single_label)
    argmax_pred = predicted(probs, [0.0] * len(spec.tags), True) if spec.single_label else pred
    native_pred = predicted(scores.native, [0.0 if spec.single_label else 0.5] * len(spec.tags), spec.single_label)
    y = test.y
    report: dict[str, Any] = {
        "tag_set": spec.slug,
        "kind": spec.kind,
        "scorer": scores.scorer,
        "scorer_version": scores.scorer_version,
        "calibration": source,
        "n_test": len(y),
        "n_dev": len(dev.y) if dev is not None else 0,
        "target_precision": target_precision,
        "tags": {},
    }
    for j, tag in enumerate(spec.tags):
        report["tags"][tag.slug] = {
            **tag_report(probs, scores.native, y, argmax_pred if spec.single_label else pred, j),
            "threshold": thresholds[j],
            "at_threshold": _prf(pred[:, j], y[:, j]),
            "before_calibration": _prf(native_pred[:, j], y[:, j]),
        }
    from sklearn.metrics import f1_score

    report["micro_f1"] = float(f1_score(y, argmax_pred, average="micro", zero_division=0))
    report["macro_f1"] = float(f1_score(y, argmax_pred, average="macro", zero_division=0))
    report["macro_f1_before_calibration"] = float(f1_score(y, native_pred, average="macro", zero_division=0))
    if spec.single_label:
        truth, guess = y.argmax(axis=1), np.nan_to_num(probs, nan=-1).argmax(axis=1)
        report["accuracy"] = float((truth == guess).mean())
        report["accuracy_before_calibration"] = float((truth == scores.native.argmax(axis=1)).mean())
        report["set_macro_f1"] = macro_f1(truth.tolist(), guess.tolist())
    if fitted is not None:
        report["pooled_calibration"] = pooled
        report["fitted"] = {
            t.slug: {"calibration": c, "threshold": th} for t, c, th in zip(spec.tags, fitted, thresholds, strict=True)
        }
    return report
