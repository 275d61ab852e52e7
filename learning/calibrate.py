"""Calibrate a model version on the labels agents gave: its temperature and proposed per-team thresholds.

``calibrate_version()`` (the ``calibrate_routing`` command) collects the latest label of each ticket,
the scores the version stored when it routed them (or fresh ones), and hands them to the calibration
math in ``mlops.calibration``; the version stores the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mlops.calibration import (
    MIN_CALIBRATION_LABELS,
    MIN_THRESHOLD_SUPPORT,
    accuracy,
    evaluate_thresholds,
    fit_calibration,
)
from mlops.inference.scorers import Scorer
from mlops.models import ModelVersion
from mlops.registry import serving_version
from triage.models import Correction, Prediction, Ticket
from triage.routing import routable_teams, team_classes


@dataclass
class LabeledRows:
    """Labeled tickets of one version: per row its class slugs, logits and the label's index."""

    slugs: list[list[str]] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    ticket_ids: list[int] = field(default_factory=list)
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.labels)


def labeled_rows_from_predictions(version: ModelVersion, labels: dict[int, str]) -> LabeledRows:
    """Rows from the predictions ``version`` stored: log of its uncalibrated scores are its logits
    (up to a per-row constant, which a softmax ignores)."""
    rows = LabeledRows()
    for ticket_id, raw in Prediction.objects.filter(model_version=version, ticket_id__in=labels).values_list(
        "ticket_id", "raw_scores"
    ):
        slugs = list(raw)
        label = labels[ticket_id]
        if label not in raw or len(slugs) < 2:
            rows.skipped += 1
            continue
        p = np.clip(np.array([float(raw[s]) for s in slugs]), 1e-300, None)
        rows.slugs.append(slugs)
        rows.logits.append(np.log(p))
        rows.labels.append(slugs.index(label))
        rows.ticket_ids.append(ticket_id)
    return rows


def labeled_rows_by_rescoring(scorer: Scorer, labels: dict[int, str], batch_size: int = 64) -> LabeledRows:
    """Rows from scoring the labeled tickets again with ``scorer`` over today's routable teams."""
    teams = routable_teams()
    slugs = [t.slug for t in teams]
    classes = team_classes(teams)
    rows = LabeledRows()
    tickets = list(Ticket.objects.filter(pk__in=labels).only("pk", "subject", "body").order_by("pk"))
    usable = [t for t in tickets if labels[t.pk] in slugs]
    rows.skipped = len(labels) - len(usable)
    for start in range(0, len(usable), batch_size):
        chunk = usable[start : start + batch_size]
        logits = scorer.logits([t.text for t in chunk], classes)
        for ticket, row in zip(chunk, logits, strict=True):
            rows.slugs.append(slugs)
            rows.logits.append(row)
            rows.labels.append(slugs.index(labels[ticket.pk]))
            rows.ticket_ids.append(ticket.pk)
    return rows


@dataclass(frozen=True)
class CalibrationResult:
    version: ModelVersion
    n: int
    skipped: int
    calibration: dict[str, Any]
    thresholds: dict[str, float]
    details: dict[str, Any]


def calibrate_version(
    version: ModelVersion,
    *,
    target_precision: float | None = None,
    mode: str = "precision",
    min_support: int = MIN_THRESHOLD_SUPPORT,
    rescore: bool = False,
    min_labels: int = MIN_CALIBRATION_LABELS,
) -> CalibrationResult:
    """Fit ``version``'s temperature on the tickets agents labeled and propose per-team thresholds.

    Labels are the latest ``Correction`` of each ticket. Scores are the ones ``version`` stored when
    it routed them, or (``rescore=True``) fresh ones from its scorer over today's teams, which also
    covers imported labeled tickets it never routed. The zero-shot version never saw these labels, so
    they serve as its validation split: one temperature, then per-team thresholds on the calibrated
    scores. Stores ``calibration``, ``thresholds`` and ``metrics["calibration"]`` on the version;
    team thresholds are only proposals until applied (``calibrate_routing --apply``, the tuning page).
    Raises ``ValueError`` when there are fewer than ``min_labels`` usable labels; nothing is stored then.
    """
    target = settings.TRIAGE_TARGET_PRECISION if target_precision is None else target_precision
    labels = Correction.objects.slug_per_ticket()
    if rescore:
        serving = serving_version(team_classes(routable_teams()))
        if serving.version.pk != version.pk:
            raise ValueError(f"--rescore needs {version} to be the version this process serves ({serving.version})")
        rows = labeled_rows_by_rescoring(serving.scorer, labels)
    else:
        rows = labeled_rows_from_predictions(version, labels)
    if len(rows) < min_labels:
        raise ValueError(
            f"only {len(rows)} labeled tickets have scores from {version} ({rows.skipped} skipped); "
            f"need at least {min_labels} (route more tickets, or use --rescore to score labeled ones)"
        )
    # One column per team slug over the union of the rows' slugs; a team a row was not scored on is
    # -inf there (probability 0), so the fit is the same as on each row's own teams.
    all_slugs = sorted({s for slugs in rows.slugs for s in slugs})
    index = {s: i for i, s in enumerate(all_slugs)}
    logits = np.full((len(rows), len(all_slugs)), -np.inf)
    y = np.empty(len(rows), dtype=np.int64)
    for r, slugs in enumerate(rows.slugs):
        logits[r, [index[slug] for slug in slugs]] = rows.logits[r]
        y[r] = index[slugs[rows.labels[r]]]
    fitted = fit_calibration(
        logits, y, all_slugs, target_precision=target, mode=mode, min_support=min_support, min_labels=min_labels
    )
    thresholds = fitted.thresholds
    proposal = {slug: round(thresholds.for_class(slug), 4) for slug in all_slugs}
    calibration = {
        **fitted.as_dict(),
        "fitted_at": timezone.now().isoformat(),
        "source": "rescore" if rescore else "predictions",
    }
    outcome = evaluate_thresholds(fitted.probabilities, y, all_slugs, thresholds)
    details = {
        "n": len(rows),
        "skipped": rows.skipped,
        "accuracy": accuracy(y, fitted.probabilities.argmax(1)),
        "ece_raw": fitted.fit.ece_before,
        "ece_calibrated": fitted.ece_after,
        "threshold_mode": mode,
        "target_precision": target,
        "fallback_threshold": thresholds.fallback,
        "per_team": thresholds.details,
        "on_labels": outcome,
    }
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        locked.calibration = calibration
        locked.thresholds = proposal
        locked.metrics = {**(locked.metrics or {}), "calibration": details}
        locked.save(update_fields=["calibration", "thresholds", "metrics"])
    return CalibrationResult(locked, len(rows), rows.skipped, calibration, proposal, details)
