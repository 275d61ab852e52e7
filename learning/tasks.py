"""Retraining tasks. Thin: the work is in ``learning.training``; these claim rows and record outcomes.

* ``train_model_task(version_id)`` — on the ``training`` queue (``CELERY_TASK_ROUTES``). Claims the
  run (queued → running) first, so a redelivered message does nothing while the run is alive; a run
  whose heartbeat stopped (its worker was killed, e.g. by the out-of-memory killer) is marked failed.
* ``check_retrain_trigger_task()`` — run by beat: queues a training when ``check_trigger`` says so,
  and fails runs that stopped beating.
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mlops.models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)


def stale_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "TRIAGE_TRAINING_STALE_SECONDS", 900)))


def _heartbeat(run: TrainingRun):
    beat = parse_datetime(str((run.progress or {}).get("heartbeat") or ""))
    return beat or run.started_at or run.created_at


def fail_run(run_id: int, error: str, *, log: str = "") -> bool:
    """Mark a run and its version failed with ``error``; the champion is not touched. False if already final."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("model_version").get(pk=run_id)
        if run.state in (TrainingRun.State.SUCCEEDED, TrainingRun.State.FAILED):
            return False
        run.state = TrainingRun.State.FAILED
        run.error = error
        run.finished_at = timezone.now()
        run.progress = {**(run.progress or {}), "stage": "failed"}
        if log:
            run.log = (run.log + "\n" + log).strip()[-20_000:]
        run.save(update_fields=["state", "error", "finished_at", "progress", "log"])
        ModelVersion.objects.filter(pk=run.model_version_id).exclude(status=ModelVersion.Status.CHAMPION).update(
            status=ModelVersion.Status.FAILED, error=error
        )
    logger.error("training %s failed: %s", run.model_version.version, error)
    return True


def reap_stale_runs() -> int:
    """Fail running runs whose heartbeat is older than ``TRIAGE_TRAINING_STALE_SECONDS``."""
    limit = timezone.now() - stale_after()
    failed = 0
    for run in TrainingRun.objects.filter(state=TrainingRun.State.RUNNING):
        if _heartbeat(run) < limit:
            failed += fail_run(
                run.pk,
                f"the training worker stopped reporting progress for over {int(stale_after().total_seconds())} s "
                "(killed, e.g. out of memory, or restarted); press Retrain to try again",
            )
    return failed


@shared_task(name="learning.tasks.train_model_task", acks_late=True)
def train_model_task(version_id: int) -> str:
    """Train model version ``version_id`` (queued by ``learning.training.request_training``)."""
    from .training import TrainingError, run_training

    claimed = TrainingRun.objects.filter(model_version_id=version_id, state=TrainingRun.State.QUEUED).update(
        state=TrainingRun.State.RUNNING, started_at=timezone.now(), progress={"stage": "starting"}
    )
    if claimed != 1:
        run = TrainingRun.objects.filter(model_version_id=version_id).first()
        if run is None:
            return "no such run"
        if run.state == TrainingRun.State.RUNNING and _heartbeat(run) < timezone.now() - stale_after():
            fail_run(run.pk, "the training worker died during this run (redelivered after it stopped)")
            return "failed: stale"
        return f"already {run.state}"
    run = TrainingRun.objects.get(model_version_id=version_id)
    try:
        version = run_training(version_id)
    except TrainingError as exc:
        fail_run(run.pk, str(exc))
        return "failed"
    except MemoryError:
        fail_run(
            run.pk, "out of memory during training; lower TRIAGE_SETFIT_RECIPE's batch sizes or use a bigger worker"
        )
        return "failed"
    except Exception as exc:  # noqa: BLE001 (any error must reach the admin page, the champion keeps serving)
        message = f"{type(exc).__name__}: {exc}"
        if "out of memory" in str(exc).lower():
            message = f"out of memory during training: {exc}"
        fail_run(run.pk, message, log=traceback.format_exc(limit=8))
        return "failed"
    TrainingRun.objects.filter(pk=run.pk).update(
        state=TrainingRun.State.SUCCEEDED,
        finished_at=timezone.now(),
        progress={**TrainingRun.objects.get(pk=run.pk).progress, "stage": version.metrics.get("decision", "done")},
    )
    return version.status


@shared_task(name="learning.tasks.check_retrain_trigger_task")
def check_retrain_trigger_task() -> str:
    """Beat: queue a training when every team has enough labels and enough new ones arrived."""
    from .training import TrainingInProgress, check_trigger, request_training

    reap_stale_runs()
    check = check_trigger()
    if not check.fire:
        logger.info("retrain trigger: not now (%s)", check.reason)
        return f"not now: {check.reason}"
    try:
        version = request_training(trigger="threshold")
    except TrainingInProgress as exc:
        return f"not now: {exc}"
    logger.info("retrain trigger fired (%s): queued %s", check.reason, version.version)
    return f"queued {version.version}"
