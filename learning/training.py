"""Retraining: agents' labels → a SetFit challenger → evaluated against the champion → promoted or not.

The steps, each a function here so that the task, the ``retrain`` command and tests share them:

1. ``collect_labels`` — the latest label of each ticket (``Correction``; earlier ones stay as the
   audit trail), resolved to a *current* active team. Labels whose team was renamed follow it;
   labels whose team was deleted are re-attached by slug when a team with that slug exists again,
   otherwise excluded; labels of a deactivated team are excluded. Every exclusion is counted by
   reason and shown with the version.
2. ``check_trigger`` — whether the threshold trigger fires: every active team has at least
   ``TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM`` labels and ``TRIAGE_RETRAIN_MIN_NEW_LABELS`` labels arrived
   since the last training was requested.
3. ``request_training`` — one ``ModelVersion`` (status training) and its ``TrainingRun`` (queued),
   then ``learning.tasks.train_model_task`` on the ``training`` queue once committed. At most one run
   is queued or running at a time.
4. ``run_training`` (in the worker) — stratified, stable split (``split_examples``: a ticket held
   out once stays held out; teams with fewer labels than the minimum are not trained on: they keep
   zero-shot scores and all their labels are held out), SetFit via ``train_setfit``, champion and
   challenger scored on the same held-out labels (leaving out any the champion was trained on),
   temperature and per-team thresholds fitted for the challenger on its held-out predictions, then
   ``promote_version`` when its macro-F1 beats the champion's by ``TRIAGE_PROMOTION_MARGIN``;
   otherwise the version is rejected with the reason. The champion is the current champion's scorer
   (zero-shot or an earlier SetFit version), or the configured zero-shot scorer when there is none.

Thresholds fitted here are stored on the version as proposals, like ``learning.calibrate.calibrate_version``
stores them for zero-shot versions: the temperature applies as soon as the version serves, the team
thresholds (``Team.threshold``) stay what admins set on the tuning page.

A failure at any step marks the run and the version failed with the error; the champion is only
ever changed by ``promote_version``, in one transaction, so it keeps serving.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from mlops.models import ModelVersion, TrainingRun
from mlops.registry import promote_version
from triage.importing import ImportReport, RowError
from triage.models import Correction, Team, TeamChange, Ticket
from triage.services import record_label

logger = logging.getLogger(__name__)

SCORER = "setfit"
# Postgres advisory lock key that serialises "is a run queued? then queue one" across processes.
_QUEUE_LOCK = 0x7E7A1_5E7F
# Stored on TrainingRun.log; older lines are dropped so that a long run does not bloat the row.
LOG_MAX_CHARS = 20_000


class TrainingError(Exception):
    """Training cannot go on for a reason an admin can fix (too few labels, bad data, ...)."""


class TrainingInProgress(Exception):
    """Another training run is queued or running."""

    def __init__(self, run: TrainingRun) -> None:
        super().__init__(f"training run #{run.pk} ({run.model_version.version}) is already {run.state}")
        self.run = run


# --- Settings ----------------------------------------------------------------------------------------


def min_labels_per_team() -> int:
    return int(getattr(settings, "TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM", 8))


def min_new_labels() -> int:
    return int(getattr(settings, "TRIAGE_RETRAIN_MIN_NEW_LABELS", 20))


def promotion_margin() -> float:
    return float(getattr(settings, "TRIAGE_PROMOTION_MARGIN", 0.02))


def holdout_fraction() -> float:
    return float(getattr(settings, "TRIAGE_RETRAIN_HOLDOUT", 0.25))


def recipe_overrides() -> dict[str, Any]:
    """``TRIAGE_SETFIT_RECIPE``: a JSON object of ``SetFitRecipe`` fields to change (``{"max_body_steps": 100}``)."""
    raw = getattr(settings, "TRIAGE_SETFIT_RECIPE", "") or ""
    if isinstance(raw, dict):
        return dict(raw)
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"TRIAGE_SETFIT_RECIPE must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured("TRIAGE_SETFIT_RECIPE must be a JSON object of SetFitRecipe fields")
    return value


def make_recipe(overrides: dict[str, Any] | None = None):
    """The ``SetFitRecipe`` with settings' overrides applied; unknown fields are refused."""
    from mlops.inference.setfit_recipe import SetFitRecipe

    overrides = recipe_overrides() if overrides is None else overrides
    known = {f.name for f in dataclasses.fields(SetFitRecipe)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ImproperlyConfigured(f"TRIAGE_SETFIT_RECIPE has unknown fields {unknown}; known: {sorted(known)}")
    return dataclasses.replace(SetFitRecipe(), **overrides)


# --- 1. Labels ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    ticket_id: int
    text: str
    label: str  # slug of the current team
    correction_id: int


@dataclass
class LabelSet:
    """Training data: one example per labelled ticket, and what was left out and why."""

    examples: list[Example]
    excluded: Counter = field(default_factory=Counter)  # reason -> tickets
    remapped: Counter = field(default_factory=Counter)  # "old slug -> new slug" -> tickets

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(e.label for e in self.examples).items()))

    def report(self) -> dict[str, Any]:
        return {
            "labelled_tickets": len(self.examples) + sum(self.excluded.values()),
            "used": len(self.examples),
            "excluded": dict(sorted(self.excluded.items())),
            "remapped": dict(sorted(self.remapped.items())),
        }


EXCLUDED_INACTIVE = "team deactivated"
EXCLUDED_DELETED = "team deleted"


def slug_history() -> dict[str, str]:
    """Old slug → the slug it was renamed to, from the team audit trail (``TeamChange`` field ``slug``)."""
    rows = TeamChange.objects.filter(field="slug").order_by("created_at", "pk").values_list("before", "after")
    return {before: after for before, after in rows if before and after and before != after}


def _follow(slug: str, renames: dict[str, str]) -> str:
    seen = {slug}
    while slug in renames and renames[slug] not in seen:
        slug = renames[slug]
        seen.add(slug)
    return slug


def collect_labels(*, until=None, texts: bool = True) -> LabelSet:
    """The latest label of each ticket, resolved to a current active team (see the module docstring).

    ``until``: only labels recorded up to this moment (the training's start), so that a run is
    reproducible from its data hash even while agents keep labelling. ``texts=False`` leaves the
    tickets' text out (empty), for counting.
    """
    labels = Correction.objects.all()
    if until is not None:
        labels = labels.filter(created_at__lte=until)
    fields = ["pk", "ticket_id", "to_team_slug", "to_team"] + (["ticket__subject", "ticket__body"] if texts else [])
    latest = labels.latest_per_ticket().select_related("to_team", *(["ticket"] if texts else [])).only(*fields)
    teams_by_slug = {t.slug: t for t in Team.objects.all()}
    renames: dict[str, str] | None = None
    out = LabelSet(examples=[])
    for label in latest:
        team = label.to_team
        if team is None:  # deleted: a team with the slug (or the slug it was renamed to) may exist now
            if renames is None:
                renames = slug_history()
            team = teams_by_slug.get(_follow(label.to_team_slug, renames))
            if team is None:
                out.excluded[EXCLUDED_DELETED] += 1
                continue
        if not team.active:
            out.excluded[EXCLUDED_INACTIVE] += 1
            continue
        if team.slug != label.to_team_slug:
            out.remapped[f"{label.to_team_slug} -> {team.slug}"] += 1
        out.examples.append(Example(label.ticket_id, label.ticket.text if texts else "", team.slug, label.pk))
    out.examples.sort(key=lambda e: e.ticket_id)
    return out


LABEL_FIELDS = ("external_id", "team")


def import_labels(data: bytes, fmt: str, *, agent=None) -> ImportReport:
    """Import labels of existing tickets from CSV (header ``external_id,team``) or JSONL.

    ``team`` is a team's slug (or its exact name). Every row is checked first; with any bad row
    nothing is stored and the report lists each problem as (line, field, reason). A row that names
    the team the ticket is already labelled with changes nothing (``unchanged``), so a file can be
    imported twice. Two rows for one ticket are both stored, in file order: the later one wins.

    >>> import_labels(b"external_id,team\\nT-1,billing\\n", "csv").created           # doctest: +SKIP
    1
    """
    from triage.importing import iter_rows

    report = ImportReport()
    rows = list(iter_rows(data, fmt, report.errors))
    teams = {t.slug: t for t in Team.objects.all()}
    by_name = {t.name.casefold(): t for t in teams.values()}
    wanted = {str(r.get("external_id") or "").strip() for _, r in rows}
    tickets = {t.external_id: t for t in Ticket.objects.filter(external_id__in=wanted - {""})}
    planned: list[tuple[Ticket, Team]] = []
    for line, row in rows:
        unknown = sorted(set(row) - set(LABEL_FIELDS))
        if unknown:
            report.errors.append(RowError(line, unknown[0], f"unknown field (expected {', '.join(LABEL_FIELDS)})"))
            continue
        ext = str(row.get("external_id") or "").strip()
        name = str(row.get("team") or "").strip()
        ticket = tickets.get(ext)
        team = teams.get(name) or by_name.get(name.casefold())
        if not ext:
            report.errors.append(RowError(line, "external_id", "is required"))
        elif ticket is None:
            report.errors.append(RowError(line, "external_id", f"no ticket has external_id {ext!r}"))
        if not name:
            report.errors.append(RowError(line, "team", "is required"))
        elif team is None:
            report.errors.append(RowError(line, "team", f"unknown team {name!r}"))
        elif not team.active:
            report.errors.append(RowError(line, "team", f"team {team.slug!r} is deactivated; it takes no tickets"))
        if ticket is not None and team is not None and team.active:
            planned.append((ticket, team))
    if report.errors:
        return report
    latest = dict(
        Correction.objects.filter(ticket__in=[t for t, _ in planned])
        .latest_per_ticket()
        .values_list("ticket_id", "to_team_id")
    )
    with transaction.atomic():
        for ticket, team in planned:
            if latest.get(ticket.pk) == team.pk:
                report.unchanged += 1
                continue
            record_label(ticket, team, agent=agent, kind=Correction.Kind.IMPORTED, source="import")
            latest[ticket.pk] = team.pk
            report.created += 1
    return report


def data_hash(examples: Sequence[Example], extra: dict[str, Any] | None = None) -> str:
    """SHA-256 of the (ticket, label, text) triples and the split settings: same data, same hash."""
    h = hashlib.sha256()
    for e in sorted(examples, key=lambda e: e.ticket_id):
        h.update(f"{e.ticket_id}\t{e.label}\t".encode())
        h.update(hashlib.sha256(e.text.encode("utf-8")).digest())
        h.update(b"\n")
    h.update(json.dumps(extra or {}, sort_keys=True, default=str).encode())
    return h.hexdigest()


# --- 2. Trigger --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerCheck:
    fire: bool
    reason: str
    counts: dict[str, int]
    new_labels: int


def active_run() -> TrainingRun | None:
    return (
        TrainingRun.objects.select_related("model_version")
        .filter(state__in=[TrainingRun.State.QUEUED, TrainingRun.State.RUNNING])
        .order_by("created_at")
        .first()
    )


def last_training() -> ModelVersion | None:
    """The latest training requested, whatever came of it: new labels are counted from it."""
    return ModelVersion.objects.filter(scorer=SCORER).order_by("-created_at", "-pk").first()


def new_labels_since(version: ModelVersion | None) -> int:
    labels = Correction.objects.all()
    if version is not None:
        labels = labels.filter(created_at__gt=version.created_at)
    return labels.count()


def check_trigger() -> TriggerCheck:
    """Whether the label thresholds call for a training now, and why (or why not)."""
    active = list(Team.objects.filter(active=True).values_list("slug", flat=True))
    counts = Counter(collect_labels(texts=False).counts)
    per_team = {slug: counts.get(slug, 0) for slug in sorted(active)}
    new = new_labels_since(last_training())
    need, need_new = min_labels_per_team(), min_new_labels()
    if len(active) < 2:
        return TriggerCheck(False, "fewer than two active teams: there is nothing to classify", per_team, new)
    short = [f"{slug} ({n})" for slug, n in per_team.items() if n < need]
    if short:
        return TriggerCheck(False, f"teams below {need} labels: {', '.join(short)}", per_team, new)
    if new < need_new:
        return TriggerCheck(False, f"{new} new labels since the last training; {need_new} needed", per_team, new)
    run = active_run()
    if run is not None:
        return TriggerCheck(False, f"training run #{run.pk} is already {run.state}", per_team, new)
    return TriggerCheck(True, f"every team has ≥ {need} labels and {new} new labels arrived", per_team, new)


# --- 3. Requesting a run -----------------------------------------------------------------------------


def request_training(*, trigger: str, user=None, enqueue: bool = True) -> ModelVersion:
    """Queue a training: a ``ModelVersion`` (status training) with its ``TrainingRun`` (queued).

    The task is sent once the transaction commits (``enqueue=False``: the caller runs it itself,
    e.g. ``manage.py retrain --inline``). Raises ``TrainingInProgress`` when a run is already
    queued or running (checked under a lock, so two requests cannot both queue one).

    >>> version = request_training(trigger="manual", user=ada)      # doctest: +SKIP
    >>> version.training_run.state                                    # doctest: +SKIP
    'queued'
    """
    from learning.tasks import train_model_task

    recipe = make_recipe()  # refuse a bad TRIAGE_SETFIT_RECIPE here, before anything is queued
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_QUEUE_LOCK])
        run = active_run()
        if run is not None:
            raise TrainingInProgress(run)
        number = ModelVersion.objects.filter(scorer=SCORER).count() + 1
        version = ModelVersion.objects.create(
            scorer=SCORER,
            model_ref=settings.TRIAGE_EMBEDDER_MODEL,
            version=f"setfit-{number}",
            status=ModelVersion.Status.TRAINING,
            trigger=trigger,
            triggered_by=user,
            config={
                "recipe": dataclasses.asdict(recipe),
                "base_model": settings.TRIAGE_EMBEDDER_MODEL,
                "min_labels_per_team": min_labels_per_team(),
                "holdout_fraction": holdout_fraction(),
                "promotion_margin": promotion_margin(),
            },
        )
        TrainingRun.objects.create(model_version=version, progress={"stage": "queued"})
        version_id = version.pk
        if enqueue:
            transaction.on_commit(lambda: train_model_task.delay(version_id))
    logger.info("training %s requested (%s) by %s", version.version, trigger, user or "the system")
    return version


# --- 4a. Split ----------------------------------------------------------------------------------------


@dataclass
class Split:
    train: list[Example]
    holdout: list[Example]
    trained_teams: list[str]  # teams the model learns
    zero_shot_teams: list[str]  # active teams left to zero-shot (too few labels)


# Fixed, so that a ticket held out once stays held out in later trainings: a later champion/challenger
# comparison then runs on tickets neither model was trained on.
HOLDOUT_SALT = "triage-holdout-v1"


def holdout_rank(ticket_id: int) -> float:
    """A ticket's fixed place in [0, 1): held out when below the held-out fraction."""
    digest = hashlib.sha256(f"{HOLDOUT_SALT}:{ticket_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_examples(examples: Sequence[Example], *, min_per_team: int, fraction: float) -> Split:
    """Stratified, stable split: per team, the tickets whose ``holdout_rank`` is below ``fraction``.

    Per team at least one ticket is held out and at least two are kept for training (the lowest
    ranks fill or trim the held-out share). The assignment of a ticket does not depend on the other
    tickets, so growing label sets keep their earlier held-out tickets held out. Teams with fewer than
    ``min_per_team`` labels are not trained on: all their labels are held out, so the evaluation
    still covers them (scored by the zero-shot part of the hybrid).
    """
    by_team: dict[str, list[Example]] = {}
    for e in examples:
        by_team.setdefault(e.label, []).append(e)
    train: list[Example] = []
    holdout: list[Example] = []
    trained, zero_shot = [], []
    for team in sorted(by_team):
        items = sorted(by_team[team], key=lambda e: (holdout_rank(e.ticket_id), e.ticket_id))
        if len(items) < max(min_per_team, 3):
            holdout.extend(items)
            zero_shot.append(team)
            continue
        below = sum(1 for e in items if holdout_rank(e.ticket_id) < fraction)
        n_hold = min(len(items) - 2, max(1, below))
        holdout.extend(items[:n_hold])
        train.extend(items[n_hold:])
        trained.append(team)
    return Split(train, holdout, trained, zero_shot)


# --- 4b. Evaluation ----------------------------------------------------------------------------------


def team_classes(teams: Sequence[Team] | None = None) -> list:
    """The classes both models are evaluated on: every active team, built as the router builds them."""
    from triage.routing import team_classes as classes_of

    return classes_of(list(teams) if teams is not None else list(Team.objects.filter(active=True).order_by("slug")))


def evaluate(scorer, texts: Sequence[str], labels: Sequence[str], classes: Sequence) -> dict[str, Any]:
    """Top-1 accuracy and macro-F1 (over the teams present in ``labels``) of ``scorer`` on labelled texts.

    Also returns the raw ``logits`` (for calibration); ``_public`` strips them before storing.
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
    from mlops.calibration import classification_report

    index = {slug: i for i, slug in enumerate(slugs)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    report = classification_report(y, np.asarray(logits).argmax(axis=1), list(slugs))
    return {
        "accuracy": round(report["accuracy"], 4),
        "macro_f1": round(report["macro_f1"], 4),
        "f1_per_team": {s: round(v["f1"], 4) for s, v in report["per_class"].items() if v["support"]},
        "n": len(labels),
    }


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
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


# --- 4c. Calibration ---------------------------------------------------------------------------------


def calibrate(logits: np.ndarray, labels: Sequence[str], slugs: Sequence[str]) -> tuple[dict, dict, dict]:
    """Temperature and per-team thresholds for a new version, fitted on its held-out predictions.

    Uses the routing layer's ``mlops.calibration`` (the same fit ``calibrate_version`` does for
    zero-shot versions). Returns ``(calibration, thresholds, details)`` in the formats stored on
    ``ModelVersion``: thresholds for every team, the pooled fallback where a team has too few
    held-out tickets; like any version's, they are proposals an admin applies on the tuning page.
    """
    from mlops import calibration as cal

    index = {s: i for i, s in enumerate(slugs)}
    y = np.array([index[label] for label in labels])
    fit = cal.fit_temperature(logits, y)
    calibration = {**fit.as_dict(), "fitted_at": timezone.now().isoformat(), "source": "held-out labels"}
    if len(y) < MIN_CALIBRATION_LABELS:
        # A handful of held-out tickets, often all right, would drive T towards 0 (certainty): keep T = 1.
        calibration.update(temperature=1.0, nll_after=fit.nll_before, ece_after=fit.ece_before)
        calibration["note"] = f"not fitted: {len(y)} held-out labels, {MIN_CALIBRATION_LABELS} needed"
    elif fit.temperature < MIN_TEMPERATURE:
        # Every held-out ticket right with a margin: the likelihood keeps improving as T → 0. Sharpen no further.
        calibration.update(
            temperature=MIN_TEMPERATURE, nll_after=cal.negative_log_likelihood(logits, y, MIN_TEMPERATURE)
        )
        calibration["note"] = f"bounded at {MIN_TEMPERATURE}: held-out predictions separable"
    probabilities = cal.softmax(logits, calibration["temperature"])
    target = float(settings.TRIAGE_TARGET_PRECISION)
    thresholds = cal.choose_thresholds(
        probabilities, y, list(slugs), target_precision=target, min_support=min_support_for(len(y))
    )
    details = {
        "target_precision": target,
        "fallback_threshold": thresholds.fallback,
        "per_team": thresholds.details,
        "on_held_out": cal.evaluate_thresholds(probabilities, y, list(slugs), thresholds),
    }
    return calibration, {slug: round(thresholds.for_class(slug), 4) for slug in slugs}, details


# Held-out labels needed to fit a temperature (as ``mlops.services`` needs for zero-shot versions),
# and the lowest temperature accepted: below it a small, separable held-out set only claims certainty.
MIN_CALIBRATION_LABELS = 20
MIN_TEMPERATURE = 0.25


def min_support_for(n_holdout: int) -> int:
    """Held-out tickets a team's threshold must rest on: 5, fewer for small held-out sets."""
    return max(2, min(5, n_holdout // 10))


# --- 4. The run itself (called by the worker) ---------------------------------------------------------


class RunRecorder:
    """Writes a run's progress and log lines to its row (throttled) and to the logger."""

    def __init__(self, run: TrainingRun, *, every: float = 1.0) -> None:
        self.run = run
        self.every = every
        self._last = 0.0
        self._lines: list[str] = [run.log] if run.log else []

    def log(self, message: str, *args: Any) -> None:
        text = message % args if args else message
        logger.info("[%s] %s", self.run.model_version.version, text)
        self._lines.append(f"{timezone.now():%H:%M:%S} {text}")
        self.save(force=True)

    def stage(self, stage: str) -> None:
        # Training's step counts stay: after the run they say how far it went.
        self.run.progress = {**self.run.progress, "stage": stage}
        self.log(stage)

    def progress(self, update: dict[str, Any]) -> None:
        body = (
            {"body_step": update["step"], "body_total_steps": update["total_steps"]}
            if update.get("phase") == "body"
            else {}
        )
        self.run.progress = {**self.run.progress, "stage": "training", **_rounded(update), **body}
        now = time.monotonic()
        last_step = update.get("step") == update.get("total_steps")
        if now - self._last >= self.every or last_step:
            step, total = update.get("step"), update.get("total_steps")
            eta = update.get("eta_seconds")
            logger.info(
                "[%s] %s step %s/%s epoch %.2f eta %s",
                self.run.model_version.version,
                update.get("phase"),
                step,
                total,
                float(update.get("epoch") or 0.0),
                f"{eta:.0f}s" if eta is not None else "?",
            )
            self.save()

    def save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        self.run.progress = {**self.run.progress, "heartbeat": timezone.now().isoformat()}
        text = "\n".join(self._lines)
        self.run.log = text[-LOG_MAX_CHARS:]
        TrainingRun.objects.filter(pk=self.run.pk).update(progress=self.run.progress, log=self.run.log)


def _rounded(update: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in update.items()}


def artifact_dir(version: ModelVersion, digest: str) -> Path:
    """``<TRIAGE_ARTIFACTS_DIR>/setfit/<version>-<data hash>``: a reset database reusing a version name
    never overwrites another model's files."""
    return Path(settings.TRIAGE_ARTIFACTS_DIR) / "setfit" / f"{version.version}-{digest[:12]}"


def champion_scorer(champion: ModelVersion | None):
    """The scorer the champion routes with, and its name for the report: ``(scorer, name)``.

    With no champion (or one that cannot load here), the configured zero-shot scorer stands in for it:
    that is what routes tickets when no trained model serves.
    """
    from mlops.inference.encoders import ModelUnavailable
    from mlops.inference.registry import get_zero_shot_scorer, scorer_for_version

    if champion is not None:
        try:
            return scorer_for_version(champion), champion.version
        except ModelUnavailable as exc:
            logger.warning("champion %s cannot load (%s); comparing with the zero-shot scorer", champion, exc)
    scorer = get_zero_shot_scorer()
    return scorer, f"zero-shot ({scorer.name})"


def run_training(version_id: int) -> ModelVersion:
    """Train, evaluate, calibrate and promote or reject version ``version_id``; its run must be running.

    Raises on failure (the task records it); the champion is changed only by ``promote_version``.
    """
    from mlops.inference.setfit_recipe import train_setfit
    from mlops.inference.setfit_scorer import SetFitScorer, save_model

    version = ModelVersion.objects.select_related("training_run").get(pk=version_id)
    run = version.training_run
    rec = RunRecorder(run)
    started = time.monotonic()

    rec.stage("collecting labels")
    labels = collect_labels(until=version.created_at)
    need = int(version.config.get("min_labels_per_team", min_labels_per_team()))
    fraction = float(version.config.get("holdout_fraction", holdout_fraction()))
    margin = float(version.config.get("promotion_margin", promotion_margin()))
    digest = data_hash(labels.examples, {"min_per_team": need, "holdout": fraction})
    seed = int(digest[:8], 16) % (2**31)  # same labels, same training
    split = split_examples(labels.examples, min_per_team=need, fraction=fraction)
    report = labels.report()
    rec.log(
        "%d labelled tickets: %d used, excluded %s, remapped %s",
        report["labelled_tickets"],
        report["used"],
        report["excluded"] or "none",
        report["remapped"] or "none",
    )
    ModelVersion.objects.filter(pk=version.pk).update(label_counts=labels.counts, data_hash=digest)
    if len(split.trained_teams) < 2:
        raise TrainingError(
            f"need at least two active teams with {need} labels each to train; label counts: "
            f"{labels.counts or 'no labels'}"
        )
    classes = team_classes()
    slugs = [c.slug for c in classes]
    stray = sorted({e.label for e in split.holdout} - set(slugs))
    if stray:  # cannot happen (labels resolve to active teams), but an evaluation must never skip a label
        raise TrainingError(f"held-out labels of teams that are not routing classes: {stray}")
    rec.log(
        "split: %d train (%s), %d held out; zero-shot teams: %s",
        len(split.train),
        ", ".join(split.trained_teams),
        len(split.holdout),
        ", ".join(split.zero_shot_teams) or "none",
    )

    rec.stage("training")
    # The recipe recorded when the run was requested, so that a settings change cannot alter a queued run.
    recipe = make_recipe(version.config["recipe"]) if "recipe" in version.config else make_recipe()

    from mlops.inference.encoders import resolve_model_ref

    base = resolve_model_ref(version.config.get("base_model") or settings.TRIAGE_EMBEDDER_MODEL)
    texts = fit_for_training(base, [e.text for e in split.train], recipe.max_length)
    descriptions = {c.slug: f"{c.name}. {c.description}".strip() for c in classes if c.slug in split.trained_teams}
    train_started = time.monotonic()
    model = train_setfit(
        texts,
        [e.label for e in split.train],
        base_model=base,
        recipe=recipe,
        label_descriptions=descriptions,
        progress=rec.progress,
        device=_training_device(),
        seed=seed,
    )
    training_seconds = time.monotonic() - train_started

    rec.stage("saving")
    target = save_model(
        model,
        artifact_dir(version, digest),
        texts=texts,
        labels=[e.label for e in split.train],
        meta={
            "version": version.version,
            "data_hash": digest,
            "base_model": version.config.get("base_model"),
            "recipe": dataclasses.asdict(recipe),
            "trained_teams": split.trained_teams,
            "zero_shot_teams": split.zero_shot_teams,
            # Which tickets this version learnt from: a later challenger is not compared with it on them.
            "train_ticket_ids": [e.ticket_id for e in split.train],
        },
        seed=seed,
    )
    del model

    rec.stage("evaluating")
    holdout_texts = [e.text for e in split.holdout]
    holdout_labels = [e.label for e in split.holdout]
    champion = ModelVersion.objects.champion()
    baseline, baseline_name = champion_scorer(champion)
    # Untrained teams are scored by the configured zero-shot scorer, exactly as when this version serves.
    challenger = SetFitScorer(target, version=version.version)
    held_out = evaluate(challenger, holdout_texts, holdout_labels, classes)
    # Both are compared on the same tickets, none of which either model was trained on.
    seen = set((getattr(baseline, "meta", None) or {}).get("train_ticket_ids") or [])
    keep = [i for i, e in enumerate(split.holdout) if e.ticket_id not in seen]
    if not keep:
        raise TrainingError("every held-out ticket was in the champion's training set: nothing to compare on")
    compared_labels = [holdout_labels[i] for i in keep]
    new = {**scores_of(held_out["logits"][keep], compared_labels, slugs), "scorer": challenger.name}
    old = evaluate(baseline, [holdout_texts[i] for i in keep], compared_labels, classes)
    rec.log(
        "macro-F1 on %d held-out tickets: challenger %.3f (accuracy %.3f), champion %s %.3f (accuracy %.3f)%s",
        len(keep),
        new["macro_f1"],
        new["accuracy"],
        baseline_name,
        old["macro_f1"],
        old["accuracy"],
        f"; {len(split.holdout) - len(keep)} held-out tickets left out: the champion trained on them" if seen else "",
    )

    rec.stage("calibrating")
    calibration, thresholds, threshold_details = calibrate(held_out["logits"], holdout_labels, slugs)
    rec.log(
        "temperature %.3f (NLL %.3f → %.3f); per-team thresholds for %d of %d teams, pooled %.3f for the rest",
        calibration["temperature"],
        calibration["nll_before"],
        calibration["nll_after"],
        sum(1 for d in threshold_details["per_team"].values() if d.get("source") == "class"),
        len(slugs),
        threshold_details["fallback_threshold"],
    )

    promote, reason = compare_challenger(new["macro_f1"], old["macro_f1"], margin)
    metrics = {
        "decision": "promoted" if promote else "rejected",
        "reason": reason,
        "margin": margin,
        "challenger": new,
        "champion": {**_public(old), "version": baseline_name},
        "split": {
            "train": len(split.train),
            "holdout": len(split.holdout),
            "compared": len(keep),
            "trained_teams": split.trained_teams,
            "zero_shot_teams": split.zero_shot_teams,
        },
        "labels": report,
        "thresholds": threshold_details,
    }
    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(
            artifact_path=str(target),
            metrics=metrics,
            calibration=calibration,
            thresholds=thresholds,
            training_seconds=round(training_seconds, 2),
            config={**version.config, "trained_teams": split.trained_teams, "zero_shot_teams": split.zero_shot_teams},
            status=ModelVersion.Status.CANDIDATE,
        )
        version.refresh_from_db()
        if promote:
            promote_version(version, reason=reason)
        else:
            ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.REJECTED, error="")
    rec.log("%s: %s (%.0f s in all)", "promoted" if promote else "rejected", reason, time.monotonic() - started)
    version.refresh_from_db()
    return version


def fit_for_training(base_model_path: str, texts: list[str], max_length: int) -> list[str]:
    """Long tickets keep their head and tail within the model's window, as the scorer will read them."""
    from mlops.inference.scorers import TextFitter

    fitter = TextFitter.for_model_dir(base_model_path)
    return fitter.fit(texts, max(8, max_length - 2)) if fitter else texts


def _training_device() -> str:
    from mlops.inference.encoders import resolve_device

    return resolve_device(settings.TRIAGE_INFERENCE_DEVICE)
