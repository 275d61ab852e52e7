"""Retraining tasks. Thin: the work is in ``learning.retraining`` and ``learning.trigger``; these claim
rows and record outcomes (``learning.recording``).

* ``train_model_task(version_id)`` — on the ``training`` queue (``CELERY_TASK_ROUTES``). Claims the
  run (queued → running) first, so a redelivered message does nothing while the run is alive; a run
  whose heartbeat stopped (its worker was killed, e.g. by the out-of-memory killer) is marked failed.
* ``train_tag_model_task(version_id)`` — a tag set's SetFit head (``learning.tag_retraining``), the same way.
* ``self_train_task(version_id)`` — on the ``training`` queue too: a self-trained build
  (``learning.selftrain_build``), claimed the same way.
* ``check_retrain_trigger_task()`` — run by beat: queues a training when ``check_trigger`` says so,
  and fails runs that stopped beating; ``check_selftrain_trigger_task()`` likewise for self-training.
* ``sweep_training_runs_task()`` — beat: sends queued runs whose message never reached the broker.
"""

from __future__ import annotations

import logging
import traceback

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from mlops.models import TrainingRun

from .recording import fail_run, heartbeat, reap_stale_runs, stale_after

logger = logging.getLogger(__name__)


@shared_task(name="learning.tasks.train_model_task", acks_late=True, time_limit=settings.TRIAGE_TRAINING_TIME_LIMIT)
def train_model_task(version_id: int) -> str:
    """Train model version ``version_id`` (queued by ``learning.trigger.request_training``)."""
    from .retraining import run_training

    return _run(version_id, run_training)


@shared_task(name="learning.tasks.train_tag_model_task", acks_late=True, time_limit=settings.TRIAGE_TRAINING_TIME_LIMIT)
def train_tag_model_task(version_id: int) -> str:
    """Train tag-set version ``version_id`` (queued by ``learning.tag_retraining.request_tag_training``)."""
    from .tag_retraining import run_tag_training

    return _run(version_id, run_tag_training)


@shared_task(name="learning.tasks.self_train_task", acks_late=True, time_limit=settings.TRIAGE_TRAINING_TIME_LIMIT)
def self_train_task(version_id: int) -> str:
    """Build self-trained version ``version_id`` (queued by ``learning.selftrain.request_self_training``)."""
    from .selftrain_build import run_self_training

    return _run(version_id, run_self_training)


def _claim(version_id: int) -> TrainingRun | str:
    """The run, claimed (queued → running); or why there is nothing to do (a redelivered message)."""
    claimed = TrainingRun.objects.filter(model_version_id=version_id, state=TrainingRun.State.QUEUED).update(
        state=TrainingRun.State.RUNNING, started_at=timezone.now(), progress={"stage": "starting"}
    )
    if claimed != 1:
        run = TrainingRun.objects.filter(model_version_id=version_id).first()
        if run is None:
            return "no such run"
        if run.state == TrainingRun.State.RUNNING and heartbeat(run) < timezone.now() - stale_after():
            fail_run(run.pk, "the training worker died during this run (redelivered after it stopped)")
            return "failed: stale"
        return f"already {run.state}"
    return TrainingRun.objects.get(model_version_id=version_id)


def _run(version_id: int, work) -> str:
    """Claim the run, do ``work(version_id)``, record the outcome; the champion keeps serving on failure."""
    from .retraining import TrainingError

    run = _claim(version_id)
    if isinstance(run, str):
        return run
    try:
        version = work(version_id)
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
    """Beat: queue a training when every team has enough labels and enough new ones arrived; else a tag
    set's training when its tags have (``learning.tag_retraining``)."""
    from .tag_retraining import request_due_tag_training
    from .trigger import TrainingInProgress, check_trigger, request_training

    reap_stale_runs()
    check = check_trigger()
    if not check.fire:
        logger.info("retrain trigger: not now (%s)", check.reason)
        try:
            tag_version = request_due_tag_training()
        except TrainingInProgress as exc:
            return f"not now: {exc}"
        if tag_version is not None:
            return f"queued {tag_version.version} ({tag_version.task})"
        return f"not now: {check.reason}"
    try:
        version = request_training(trigger="threshold")
    except TrainingInProgress as exc:
        return f"not now: {exc}"
    logger.info("retrain trigger fired (%s): queued %s", check.reason, version.version)
    return f"queued {version.version}"


@shared_task(name="learning.tasks.check_selftrain_trigger_task")
def check_selftrain_trigger_task() -> str:
    """Beat: queue a self-trained build every ``TRIAGE_SELFTRAIN_EVERY`` new tickets or after the teams changed."""
    from .selftrain import request_if_due

    reap_stale_runs()
    version = request_if_due()
    return f"queued {version.version}" if version is not None else "not now"


@shared_task(name="learning.tasks.sweep_training_runs_task")
def sweep_training_runs_task() -> dict[str, int]:
    """Beat: send queued training runs whose message never reached the broker (``learning.runs``)."""
    from .runs import sweep_runs

    return sweep_runs()


@shared_task(
    bind=True,
    name="learning.tasks.preview_team_description_task",
    ignore_result=False,  # the team page polls the result
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def preview_team_description_task(self, team_id: int, description: str, examples: list[str]) -> dict:
    """What an edited description would route (``learning.descriptions.preview_description``); reads only."""
    from triage.models import Team

    from .descriptions import preview_description

    def progress(done: int, total: int) -> None:
        self.update_state(state="PROGRESS", meta={"done": done, "total": total})

    return preview_description(Team.objects.get(pk=team_id), description, examples, progress=progress)


@shared_task(
    bind=True,
    name="learning.tasks.diagnose_models_task",
    ignore_result=False,  # the diagnostics page polls the state
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def diagnose_models_task(self, tickets: int, passages: int, pairs: int) -> dict:
    """Run ``learning.diagnostics`` on the serving models and save the report for the page; reads only."""
    from .diagnostics import run_diagnostics, save_report

    def progress(step: str) -> None:
        self.update_state(state="PROGRESS", meta={"step": step})

    report = run_diagnostics(tickets=tickets, passages=passages, pairs=pairs, progress=progress)
    save_report(report)
    return {"started_at": report.started_at, "warnings": len(report.warnings)}
