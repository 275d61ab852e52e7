"""Verb-named functions around model versions: which version routes, its calibration, its health.

* ``serving_version()`` — the (ModelVersion, scorer) pair that routes a ticket now; creates the
  zero-shot champion on first use (bootstrap) and records the scorer that really loaded;
* ``calibrate_version()`` — fits the temperature and proposes per-team thresholds from the labels
  agents gave (``triage.Correction``), stored on the version;
* ``routing_status()`` — one line for admins: "NLI model X could not be loaded (reason); routing
  with ensemble", from what the workers reported and a cheap local probe.

None of these import torch or transformers; scorers load in ``mlops.inference`` when first needed.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlops.calibration import (
    choose_thresholds,
    evaluate_thresholds,
    fit_temperature,
    pad_ragged,
    softmax,
)
from mlops.inference.registry import ZERO_SHOT_SCORERS, ScorerChoice, resolve_scorer, scorer_for_version
from mlops.inference.scorers import Scorer
from mlops.inference.warm import WARMERS
from mlops.models import ModelVersion, ScorerHealth

logger = logging.getLogger(__name__)

STATUS_CACHE_SECONDS = 30.0
HEALTH_MAX_AGE = timedelta(days=1)
MIN_CALIBRATION_LABELS = 20


# --- Which version routes -------------------------------------------------------------------------
@dataclass(frozen=True)
class Serving:
    """The version that routes now, its loaded scorer, and why it is not the configured one ("" if it is)."""

    version: ModelVersion
    scorer: Scorer
    fallback_reason: str = ""


def zero_shot_version_label(scorer: Scorer) -> str:
    config_hash = getattr(scorer, "config_hash", "")
    return f"{scorer.name}-{config_hash}" if config_hash else scorer.name


def ensure_zero_shot_version(scorer: Scorer, *, promote: bool) -> ModelVersion:
    """The ModelVersion row of a zero-shot scorer configuration, created on first use.

    With ``promote``, it becomes the champion when there is none, or when the champion is an older
    zero-shot configuration (the settings changed); a trained champion is never replaced here.
    """
    label = zero_shot_version_label(scorer)
    version = ModelVersion.objects.filter(scorer=scorer.name, version=label).first()
    if version is None:
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(
                    scorer=scorer.name,
                    model_ref=scorer.model_ref[:500],
                    version=label,
                    config=scorer.describe(),
                    trigger="bootstrap",
                )
        except IntegrityError:  # pragma: no cover - only a unique race on champion can raise here
            version = ModelVersion.objects.get(scorer=scorer.name, version=label)
    if promote and version.status != ModelVersion.Status.CHAMPION:
        champion = ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).first()
        if champion is None or champion.scorer in ZERO_SHOT_SCORERS:
            _promote_zero_shot(version, trigger="bootstrap" if champion is None else "settings")
            version.refresh_from_db()
    return version


def _promote_zero_shot(version: ModelVersion, *, trigger: str) -> ModelVersion:
    """Make a zero-shot ``version`` the champion, retiring the current (zero-shot) one.

    Trained versions are promoted by ``mlops.training.promote_version``, which checks their files.
    """
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.CHAMPION).first()
        if current is not None and current.pk == version.pk:
            return version
        if current is not None:
            current.status = ModelVersion.Status.RETIRED
            current.save(update_fields=["status"])
        try:
            with transaction.atomic():
                ModelVersion.objects.filter(pk=version.pk).update(
                    status=ModelVersion.Status.CHAMPION, promoted_at=timezone.now(), trigger=trigger
                )
        except IntegrityError:  # another worker promoted one in between: theirs stands
            logger.info("another process promoted a champion first; keeping it")
    version.refresh_from_db()
    return version


def serving_version() -> Serving:
    """The version and scorer that route a ticket now.

    A trained champion (e.g. SetFit) routes when its scorer loads. Otherwise the routing setting
    decides (``TRIAGE_ROUTING_SCORER``; ``auto``: NLI, else the best offline scorer) and the
    version row of what really loaded is used, becoming the champion when there is none. Raises
    ``ModelUnavailable`` when no scorer at all can load.
    """
    champion = ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).first()
    reason = ""
    if champion is not None and champion.scorer not in ZERO_SHOT_SCORERS:
        from mlops.inference.encoders import ModelUnavailable

        try:
            return Serving(champion, scorer_for_version(champion))
        except ModelUnavailable as exc:
            reason = f"champion {champion} could not be loaded ({exc})"
    choice = resolve_scorer()
    version = ensure_zero_shot_version(choice.scorer, promote=not choice.degraded and not reason)
    if champion is None and version.status != ModelVersion.Status.CHAMPION:
        version = ensure_zero_shot_version(choice.scorer, promote=True)  # bootstrap: something must be champion
    _report_once(choice, version)
    return Serving(version, choice.scorer, "; ".join(r for r in (reason, choice.fallback_reason) if r))


_reported: set[tuple] = set()


def _report_once(choice: ScorerChoice, version: ModelVersion) -> None:
    """Report this process's scorer the first time it routes with it (workers that skip warming too)."""
    key = (choice.requested, _requested_model_ref(choice.requested), choice.scorer.name, version.pk)
    if key in _reported:
        return
    if choice.degraded:
        logger.warning("%s", choice.message)
    report_scorer_health(choice, version)
    _reported.add(key)


# --- Health and status ----------------------------------------------------------------------------
def _requested_model_ref(requested: str) -> str:
    if requested in ("auto", "nli"):
        return settings.TRIAGE_NLI_MODEL or ""
    return requested


def report_scorer_health(choice: ScorerChoice, version: ModelVersion | None = None) -> ScorerHealth:
    """Record what this worker loaded, for the admin and the dashboard."""
    requested = choice.requested
    row, _ = ScorerHealth.objects.update_or_create(
        host=socket.gethostname()[:200],
        requested=requested,
        model_ref=_requested_model_ref(requested)[:500],
        defaults={
            "active_scorer": choice.scorer.name,
            "active_version": version,
            "ok": not choice.degraded,
            "message": choice.message if choice.degraded else "",
        },
    )
    _status_cache.clear()
    return row


def warm_routing_scorer() -> None:
    """Worker start: load the routing scorer, log which one routes, and report it (WARMERS entry)."""
    from mlops.inference.registry import warm_routing_scorer as load

    choice = load()
    try:
        version = ensure_zero_shot_version(choice.scorer, promote=False)
        report_scorer_health(choice, version)
    except Exception:  # the database may be migrating while a worker starts; routing reports later
        logger.exception("could not record which routing scorer this worker loaded")


WARMERS.append(warm_routing_scorer)


@dataclass(frozen=True)
class RoutingStatus:
    """What routing runs on, for a status line. Falsy when it runs as configured, so
    ``{% if status %}{{ status }}{% endif %}`` shows only problems."""

    requested: str
    model_ref: str
    ok: bool
    message: str
    active_scorer: str = ""
    reported_at: datetime | None = None
    source: str = "probe"  # "worker" when a worker reported it, "probe" when judged locally
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def __bool__(self) -> bool:
        return not self.ok


_status_cache: dict[str, tuple[float, RoutingStatus]] = {}


def routing_status() -> RoutingStatus:
    """Whether routing uses the configured scorer, and if not, why and what it uses instead.

    Cheap enough for every page: one query (cached for 30 s per process) and a file-system probe.
    """
    requested = settings.TRIAGE_ROUTING_SCORER or "auto"
    model_ref = _requested_model_ref(requested)
    key = f"{requested}|{model_ref}"
    cached = _status_cache.get(key)
    if cached and time.monotonic() - cached[0] < STATUS_CACHE_SECONDS:
        return cached[1]
    status = _compute_status(requested, model_ref)
    _status_cache[key] = (time.monotonic(), status)
    return status


def _compute_status(requested: str, model_ref: str) -> RoutingStatus:
    recent = ScorerHealth.objects.filter(
        requested=requested, model_ref=model_ref[:500], reported_at__gte=timezone.now() - HEALTH_MAX_AGE
    )
    failing = recent.filter(ok=False).first()
    if failing is not None:
        return RoutingStatus(
            requested, model_ref, False, failing.message, failing.active_scorer, failing.reported_at, "worker"
        )
    healthy = recent.filter(ok=True).first()
    if healthy is not None:
        return RoutingStatus(
            requested,
            model_ref,
            True,
            f"routing with {healthy.active_scorer}",
            healthy.active_scorer,
            healthy.reported_at,
            "worker",
        )
    from mlops.inference.availability import best_offline_scorer, nli_problem

    problem = nli_problem()
    if problem:
        fallback = best_offline_scorer() or "no scorer"
        return RoutingStatus(requested, model_ref, False, f"{problem}; routing with {fallback}", fallback)
    active = "nli" if requested == "auto" else requested
    return RoutingStatus(requested, model_ref, True, f"routing with {active}", active)


# --- Calibration from agents' labels --------------------------------------------------------------
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


def latest_labels() -> dict[int, str]:
    """Ticket id → team slug of its latest label (the latest label wins; earlier ones are history)."""
    from triage.models import Correction

    out: dict[int, str] = {}
    for ticket_id, slug in (
        Correction.objects.order_by("ticket_id", "-created_at", "-pk")
        .distinct("ticket_id")
        .values_list("ticket_id", "to_team_slug")
    ):
        out[ticket_id] = slug
    return out


def labeled_rows_from_predictions(version: ModelVersion, labels: dict[int, str]) -> LabeledRows:
    """Rows from the predictions ``version`` stored: log of its uncalibrated scores are its logits
    (up to a per-row constant, which a softmax ignores)."""
    from triage.models import Prediction

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
    from triage.models import Ticket
    from triage.routing import routable_teams, team_classes

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
    min_support: int = 5,
    rescore: bool = False,
    min_labels: int = MIN_CALIBRATION_LABELS,
) -> CalibrationResult:
    """Fit ``version``'s temperature on the tickets agents labeled and propose per-team thresholds.

    Labels are the latest ``Correction`` of each ticket. Scores are the ones ``version`` stored when
    it routed them, or (``rescore=True``) fresh ones from its scorer over today's teams, which also
    covers imported labeled tickets it never routed. The zero-shot version never saw these labels, so
    they serve as its validation split: one temperature, then per-team thresholds on the calibrated
    scores. Stores ``calibration``, ``thresholds`` and ``metrics["calibration"]`` on the version;
    team thresholds are only proposals until applied (``triage.services.update_team_routing``).
    Raises ``ValueError`` when there are fewer than ``min_labels`` usable labels; nothing is stored then.
    """
    target = settings.TRIAGE_TARGET_PRECISION if target_precision is None else target_precision
    labels = latest_labels()
    if rescore:
        serving = serving_version()
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
    logits = pad_ragged(rows.logits)
    y = np.array(rows.labels)
    fit = fit_temperature(logits, y)
    probs = softmax(logits, fit.temperature)
    # Thresholds per team slug over the union of slugs: map each row's columns to global slugs.
    all_slugs = sorted({s for slugs in rows.slugs for s in slugs})
    index = {s: i for i, s in enumerate(all_slugs)}
    global_probs = np.zeros((len(rows), len(all_slugs)))
    global_labels = np.empty(len(rows), dtype=np.int64)
    for r, slugs in enumerate(rows.slugs):
        for c, slug in enumerate(slugs):
            global_probs[r, index[slug]] = probs[r, c]
        global_labels[r] = index[slugs[rows.labels[r]]]
    thresholds = choose_thresholds(
        global_probs, global_labels, all_slugs, target_precision=target, mode=mode, min_support=min_support
    )
    proposal = {slug: round(thresholds.for_class(slug), 4) for slug in all_slugs}
    calibration = {
        **fit.as_dict(),
        "fitted_at": timezone.now().isoformat(),
        "source": "rescore" if rescore else "predictions",
    }
    outcome = evaluate_thresholds(global_probs, global_labels, all_slugs, thresholds)
    details = {
        "n": len(rows),
        "skipped": rows.skipped,
        "accuracy": float((global_probs.argmax(1) == global_labels).mean()),
        "ece_raw": fit.ece_before,
        "ece_calibrated": fit.ece_after,
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
