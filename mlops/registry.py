"""The model registry: which version is the champion, which one serves, and the only way to promote one.

* ``ModelVersion.objects.champion()`` — the champion row (``None`` when there is none yet);
* ``serving_version()`` — the (ModelVersion, scorer) pair that routes a ticket now; creates the
  zero-shot champion on first use (bootstrap) and records the scorer that really loaded;
* ``promote_version()`` — makes a version the champion and retires the previous one, in one
  transaction: after training, on an admin's rollback, and when a zero-shot configuration changes.

None of these import torch or transformers; scorers load in ``mlops.inference`` when first needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlops.health import report_scorer_health, requested_model_ref
from mlops.inference.registry import ZERO_SHOT_SCORERS, ScorerChoice, resolve_scorer, scorer_for_version
from mlops.inference.scorers import ClassSpec, Scorer
from mlops.inference.warm import WARMERS
from mlops.models import ModelVersion

logger = logging.getLogger(__name__)

# The scorer name of versions trained on agents' labels; their files must still be on disk to serve.
TRAINED_SCORER = "setfit"
# A head fitted on the unlabeled stream (learning.selftrain_build): a zero-shot model refined by what
# the teams receive. It is fitted on one set of teams' texts; when they change, zero-shot takes over.
SELF_TRAINED_SCORER = "self-trained"
# A SetFit head trained on agents' tag labels for one tag set (its ``task`` names the set).
TAG_TRAINED_SCORER = "setfit-tags"
# Versions that serve from files in their artifact directory.
FILE_SCORERS = (TRAINED_SCORER, SELF_TRAINED_SCORER, TAG_TRAINED_SCORER)
# Versions that can (again) become the champion: not failed, not still training.
SERVABLE = (ModelVersion.Status.CANDIDATE, ModelVersion.Status.RETIRED, ModelVersion.Status.REJECTED)


# --- Promotion ------------------------------------------------------------------------------------
def promote_version(version: ModelVersion, *, user=None, reason: str = "", trigger: str | None = None) -> ModelVersion:
    """Make ``version`` the champion of its task; the previous champion of that task is retired. One transaction.

    Used for promotion after training, for an admin's rollback to an earlier version and for a
    zero-shot configuration that replaces another (``trigger`` is then stored on the version). A
    version that failed or is still training cannot be promoted (``ValidationError``); a trained one
    must still have its files. When another process promotes a first champion at the same moment,
    theirs stands.

    >>> promote_version(ModelVersion.objects.get(version="setfit-2"), user=ada, reason="rollback")  # doctest: +SKIP
    """
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status == ModelVersion.Status.CHAMPION:
            return locked
        if locked.status not in SERVABLE:
            raise ValidationError(f"{locked.version} is {locked.get_status_display().lower()}: it cannot serve")
        if locked.scorer in FILE_SCORERS and not locked.files_present():
            raise ValidationError(f"the files of {locked.version} are gone from {locked.artifact_path}")
        previous = list(
            ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.CHAMPION, task=locked.task)
        )
        # Retire first: the unique constraint allows one champion at any moment, even inside a transaction.
        ModelVersion.objects.filter(pk__in=[p.pk for p in previous]).update(status=ModelVersion.Status.RETIRED)
        locked.status = ModelVersion.Status.CHAMPION
        locked.promoted_at = timezone.now()
        fields = ["status", "promoted_at"]
        if trigger is not None:
            locked.trigger = trigger
            fields.append("trigger")
        try:
            with transaction.atomic():
                locked.save(update_fields=fields)
        except IntegrityError:  # no champion was there to lock, and another process promoted one first
            logger.info("another process promoted a champion first; keeping it")
            locked.refresh_from_db()
            return locked
    logger.info(
        "%s is the champion (was %s) by %s: %s",
        locked.version,
        ", ".join(p.version for p in previous) or "none",
        user or "the system",
        reason or "promotion",
    )
    return locked


# --- Which version routes -------------------------------------------------------------------------
@dataclass(frozen=True)
class Serving:
    """The version that routes now, its loaded scorer, and why it is not the configured one ("" if it is)."""

    version: ModelVersion
    scorer: Scorer
    fallback_reason: str = ""


def classes_fingerprint(classes: Sequence[ClassSpec]) -> str:
    """A short hash of what a zero-shot scorer reads of the classes: slugs, names, descriptions, examples.

    A zero-shot model *is* its scorer plus these texts, so an admin's edit of a description makes
    another model version.
    """
    rows = sorted([c.slug, c.name, c.description, c.hypothesis, list(c.examples)] for c in classes)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:8]


def fitted_on_other_teams(version: ModelVersion, classes: Sequence[ClassSpec] | None) -> bool:
    """Whether a self-trained ``version`` was fitted on other teams' texts than ``classes`` (drift)."""
    if version.scorer != SELF_TRAINED_SCORER or not classes:
        return False
    return (version.config.get("teams") or {}).get("fingerprint") != classes_fingerprint(classes)


def zero_shot_version_label(scorer: Scorer, classes: Sequence[ClassSpec] | None = None) -> str:
    config_hash = getattr(scorer, "config_hash", "")
    label = f"{scorer.name}-{config_hash}" if config_hash else scorer.name
    return f"{label}-t{classes_fingerprint(classes)}" if classes else label


def ensure_zero_shot_version(
    scorer: Scorer, *, promote: bool, classes: Sequence[ClassSpec] | None = None
) -> ModelVersion:
    """The ModelVersion row of a zero-shot scorer configuration over ``classes``, created on first use.

    With ``promote``, it becomes the champion when there is none, when the champion is an older
    zero-shot configuration (trigger ``settings`` when the scorer's settings changed, ``teams`` when
    only the teams' texts did), or a self-trained version fitted on other teams' texts (``teams``);
    a version trained on labels is never replaced here. A new version over changed teams starts with
    the calibration of the latest zero-shot version of the same scorer settings that has one (the
    temperature is a property of the scorer more than of the descriptions) until it is recalibrated.
    """
    label = zero_shot_version_label(scorer, classes)
    scorer_label = zero_shot_version_label(scorer)
    version = ModelVersion.objects.filter(scorer=scorer.name, version=label).first()
    champion = ModelVersion.objects.champion()
    if version is None:
        config = scorer.describe()
        calibration: dict = {}
        if classes:
            config["teams"] = {"fingerprint": classes_fingerprint(classes), "slugs": [c.slug for c in classes]}
            source = (
                ModelVersion.objects.filter(scorer=scorer.name, version__startswith=scorer_label)
                .exclude(calibration={})
                .order_by("-promoted_at", "-created_at")
                .first()
            )
            if source is not None:
                calibration = source.calibration
                config["calibration_from"] = source.version
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(
                    scorer=scorer.name,
                    model_ref=scorer.model_ref[:500],
                    version=label,
                    config=config,
                    calibration=calibration,
                    trigger="bootstrap",
                )
        except IntegrityError:  # pragma: no cover - only a unique race on champion can raise here
            version = ModelVersion.objects.get(scorer=scorer.name, version=label)
    if promote and version.status != ModelVersion.Status.CHAMPION:
        if champion is None or champion.scorer in ZERO_SHOT_SCORERS or fitted_on_other_teams(champion, classes):
            if champion is None:
                trigger = "bootstrap"
            elif champion.scorer == SELF_TRAINED_SCORER:
                trigger = "teams"
            else:
                trigger = "teams" if champion.version.startswith(f"{scorer_label}-t") else "settings"
            version = promote_version(version, reason=f"zero-shot configuration ({trigger})", trigger=trigger)
    return version


def serving_version(classes: Sequence[ClassSpec] | None = None) -> Serving:
    """The version and scorer that route a ticket now.

    A trained champion (SetFit, or a self-trained head) routes when its scorer loads. Otherwise the
    routing setting decides (``TRIAGE_ROUTING_SCORER``; ``auto``: NLI, else the best offline scorer)
    and the version row of what really loaded is used, becoming the champion when there is none.
    Raises ``ModelUnavailable`` when no scorer at all can load. ``classes`` (the teams as the scorer
    sees them) are part of a zero-shot version: changed descriptions or teams make a new version,
    and replace a self-trained champion fitted on the old texts.
    """
    champion = ModelVersion.objects.champion()
    reason = ""
    if (
        champion is not None
        and champion.scorer not in ZERO_SHOT_SCORERS
        and not fitted_on_other_teams(champion, classes)
    ):
        from mlops.inference.encoders import ModelUnavailable

        try:
            return Serving(champion, scorer_for_version(champion))
        except ModelUnavailable as exc:
            reason = f"champion {champion} could not be loaded ({exc})"
    choice = resolve_scorer()
    version = ensure_zero_shot_version(choice.scorer, promote=not choice.degraded and not reason, classes=classes)
    if champion is None and version.status != ModelVersion.Status.CHAMPION:
        # bootstrap: something must be champion
        version = ensure_zero_shot_version(choice.scorer, promote=True, classes=classes)
    _report_once(choice, version)
    return Serving(version, choice.scorer, "; ".join(r for r in (reason, choice.fallback_reason) if r))


_reported: set[tuple] = set()


def _report_once(choice: ScorerChoice, version: ModelVersion) -> None:
    """Report this process's scorer the first time it routes with it (workers that skip warming too)."""
    key = (choice.requested, requested_model_ref(choice.requested), choice.scorer.name, version.pk)
    if key in _reported:
        return
    if choice.degraded:
        logger.warning("%s", choice.message)
    report_scorer_health(choice, version)
    _reported.add(key)


# --- Worker start ---------------------------------------------------------------------------------
def warm_routing_scorer(classes: Sequence[ClassSpec]) -> None:
    """Worker start: load the routing scorer, log which one routes, and report it with the version row
    of the teams routing will score (``classes``): the same ``-t<teams hash>`` label routing uses.

    Registered by the app that knows the teams (``triage.routing.warm_routing``).
    """
    from mlops.inference.registry import warm_routing_scorer as load

    choice = load()
    try:
        version = ensure_zero_shot_version(choice.scorer, promote=False, classes=classes)
        report_scorer_health(choice, version)
    except Exception:  # the database may be migrating while a worker starts; routing reports later
        logger.exception("could not record which routing scorer this worker loaded")


def warm_trained_champion() -> None:
    """Worker start: load the champion's files (SetFit model or self-trained head), if it has some."""
    champion = ModelVersion.objects.champion()
    if champion is not None and champion.scorer in FILE_SCORERS and champion.artifact_path:
        scorer_for_version(champion)


WARMERS.append(warm_trained_champion)
