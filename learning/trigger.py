"""When to train and how a run is requested.

* ``check_trigger`` — whether the threshold trigger fires: every active team has at least
  ``TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM`` labels and ``TRIAGE_RETRAIN_MIN_NEW_LABELS`` labels arrived
  since the last training was requested.
* ``request_training`` — one ``ModelVersion`` (status training) and its ``TrainingRun`` (queued),
  then ``learning.tasks.train_model_task`` on the ``training`` queue once committed (``learning.runs``:
  a broker that is down loses nothing, the sweeper sends it later). At most one run, SetFit or
  self-trained (``learning.selftrain``), is queued or running at a time: ``run_queue_lock`` (a
  Postgres advisory lock) serialises "is one queued? then queue one".
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from mlops.models import ROUTING_TASK, ModelVersion, TrainingRun
from mlops.registry import TRAINED_SCORER as SCORER
from triage.models import Correction, Team

from .labels import collect_labels
from .recipe import make_recipe
from .runs import send_run_on_commit

logger = logging.getLogger(__name__)

# Postgres advisory lock key that serialises "is a run queued? then queue one" across processes.
_QUEUE_LOCK = 0x7E7A1_5E7F


class TrainingInProgress(Exception):
    """Another training run is queued or running."""

    def __init__(self, run: TrainingRun) -> None:
        super().__init__(f"training run #{run.pk} ({run.model_version.version}) is already {run.state}")
        self.run = run


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


@contextmanager
def run_queue_lock() -> Iterator[None]:
    """A transaction in which no other process can queue a run; ``TrainingInProgress`` if one is active.

    >>> with run_queue_lock():                                         # doctest: +SKIP
    ...     version = ModelVersion.objects.create(...); TrainingRun.objects.create(...)
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_QUEUE_LOCK])
        run = active_run()
        if run is not None:
            raise TrainingInProgress(run)
        yield


def queue_run(
    scorer: str, *, model_ref: str, trigger: str, user, config: dict, enqueue: bool, task: str = ROUTING_TASK
) -> ModelVersion:
    """Under ``run_queue_lock``: the next version ``<scorer>-<n>`` (status training) for ``task`` and its
    queued run, sent to the ``training`` queue after commit (``learning.runs``) unless ``enqueue`` is False."""
    with run_queue_lock():
        number = ModelVersion.objects.filter(scorer=scorer).count() + 1
        version = ModelVersion.objects.create(
            scorer=scorer,
            model_ref=model_ref,
            version=f"{scorer}-{number}",
            status=ModelVersion.Status.TRAINING,
            trigger=trigger,
            triggered_by=user,
            config=config,
            task=task,
        )
        TrainingRun.objects.create(model_version=version, progress={"stage": "queued"})
        if enqueue:
            send_run_on_commit(version.pk)
    return version


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
    need, need_new = settings.TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM, settings.TRIAGE_RETRAIN_MIN_NEW_LABELS
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


def request_training(*, trigger: str, user=None, enqueue: bool = True) -> ModelVersion:
    """Queue a training: a ``ModelVersion`` (status training) with its ``TrainingRun`` (queued).

    The task is sent once the transaction commits (``enqueue=False``: the caller runs it itself,
    e.g. ``manage.py retrain --inline``). Raises ``TrainingInProgress`` when a run is already
    queued or running (checked under a lock, so two requests cannot both queue one).

    >>> version = request_training(trigger="manual", user=ada)      # doctest: +SKIP
    >>> version.training_run.state                                    # doctest: +SKIP
    'queued'
    """
    recipe = make_recipe()  # refuse a bad TRIAGE_SETFIT_RECIPE here, before anything is queued
    version = queue_run(
        SCORER,
        model_ref=settings.TRIAGE_EMBEDDER_MODEL,
        trigger=trigger,
        user=user,
        enqueue=enqueue,
        config={
            "recipe": dataclasses.asdict(recipe),
            "base_model": settings.TRIAGE_EMBEDDER_MODEL,
            "min_labels_per_team": settings.TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM,
            "holdout_fraction": settings.TRIAGE_RETRAIN_HOLDOUT,
            "promotion_margin": settings.TRIAGE_PROMOTION_MARGIN,
        },
    )
    logger.info("training %s requested (%s) by %s", version.version, trigger, user or "the system")
    return version
