"""Champion and challenger on the same held-out labels: scores, the promotion decision, calibration.

The metrics (accuracy, macro-F1) and the temperature and thresholds are ``mlops.calibration``'s, the
same definitions every report and page uses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.utils import timezone

from mlops import calibration as cal
from triage.models import Team
from triage.routing import team_classes as classes_of


def team_classes(teams: Sequence[Team] | None = None) -> list:
    """The classes both models are evaluated on: every active team, built as the router builds them."""
    return classes_of(list(teams) if teams is not None else list(Team.objects.filter(active=True).order_by("slug")))


def evaluate(scorer, texts: Sequence[str], labels: Sequence[str], classes: Sequence) -> dict[str, Any]:
    """Top-1 accuracy and macro-F1 of ``scorer`` on labelled texts (``mlops.calibration`` definitions).

    Also returns the raw ``logits`` (for calibration); ``public_metrics`` strips them before storing.
    """
    started = time.monotonic()
    logits = np.asarray(scorer.logits(list(texts), list(classes)), dtype=np.float64)
    seconds = time.monotonic() - started
    return {
        **scores_of(logits, labels, [c.slug for c in classes]),
        "seconds": round(seconds, 3),
        "scorer": getattr(scorer, "name", ""),
        "logits": logits,
    }


def scores_of(logits: np.ndarray, labels: Sequence[str], slugs: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and F1 per team of top-1 predictions (``mlops.calibration.classification_report``)."""
    index = {slug: i for i, slug in enumerate(slugs)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    report = cal.classification_report(y, np.asarray(logits).argmax(axis=1), list(slugs))
    return {
        "accuracy": round(report["accuracy"], 4),
        "macro_f1": round(report["macro_f1"], 4),
        "f1_per_team": {s: round(v["f1"], 4) for s, v in report["per_class"].items() if v["support"]},
        "n": len(labels),
    }


def public_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "logits"}


def compare_challenger(challenger_f1: float, champion_f1: float, margin: float) -> tuple[bool, str]:
    """Promote only when the challenger's macro-F1 beats the champion's by at least ``margin``.

    >>> compare_challenger(0.82, 0.70, 0.02)
    (True, 'macro-F1 0.820 beats the champion’s 0.700 by 0.120 (margin 0.020)')
    >>> compare_challenger(0.71, 0.70, 0.02)[0]
    False
    """
    gain = challenger_f1 - champion_f1
    if gain >= margin - 1e-9:
        return (
            True,
            f"macro-F1 {challenger_f1:.3f} beats the champion’s {champion_f1:.3f} by {gain:.3f} (margin {margin:.3f})",
        )
    return False, (
        f"macro-F1 {challenger_f1:.3f} vs the champion’s {champion_f1:.3f}: a gain of {gain:+.3f} is below "
        f"the promotion margin {margin:.3f}"
    )


def promotion_verdict(challenger_f1: float, champion_f1: float, margin: float) -> tuple[bool, dict[str, Any]]:
    """``compare_challenger``'s decision and what a version's metrics record of it (decision, reason, margin)."""
    promote, reason = compare_challenger(challenger_f1, champion_f1, margin)
    return promote, {"decision": "promoted" if promote else "rejected", "reason": reason, "margin": margin}


def calibrate(logits: np.ndarray, labels: Sequence[str], slugs: Sequence[str]) -> tuple[dict, dict, dict]:
    """Temperature and per-team thresholds for a new version, fitted on its held-out predictions.

    ``mlops.calibration.fit_calibration``, as for every version. Returns ``(calibration, thresholds,
    details)`` in the formats stored on ``ModelVersion``: thresholds for every team, the pooled
    fallback where a team has too few held-out tickets; like any version's, they are proposals an
    admin applies on the tuning page.
    """
    index = {s: i for i, s in enumerate(slugs)}
    y = np.array([index[label] for label in labels])
    target = float(settings.TRIAGE_TARGET_PRECISION)
    fitted = cal.fit_calibration(logits, y, list(slugs), target_precision=target)
    calibration = {**fitted.as_dict(), "fitted_at": timezone.now().isoformat(), "source": "held-out labels"}
    thresholds = fitted.thresholds
    details = {
        "target_precision": target,
        "fallback_threshold": thresholds.fallback,
        "per_team": thresholds.details,
        "on_held_out": cal.evaluate_thresholds(fitted.probabilities, y, list(slugs), thresholds),
    }
    return calibration, {slug: round(thresholds.for_class(slug), 4) for slug in slugs}, details
