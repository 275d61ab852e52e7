"""Training runs as an outbox: a queued run is a row first, a broker message second.

Why: a request (the Retrain or Self-train button, a trigger, a team edit) must not be lost because
Redis is down at that moment, and must not answer 500 after its row was stored. So the run's
``TrainingRun`` row (state ``queued``) is written in the request's transaction and its task is sent
after commit with ``config.celery.send_or_defer``; a broker error is logged, not raised. The beat
sweeper (``sweep_training_runs_task``, every ``TRIAGE_SWEEP_SECONDS``) sends queued runs never sent,
and re-sends a run still queued ``TRIAGE_STUCK_AFTER_SECONDS`` after its send when the ``training``
queue holds no message and no run is running (the broker lost it, e.g. Redis restarted empty). A
duplicate message is harmless: the task claims the run (queued → running) before any work.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from mlops.models import TrainingRun
from mlops.registry import SELF_TRAINED_SCORER, TAG_TRAINED_SCORER, TRAINED_SCORER

logger = logging.getLogger(__name__)

# A run whose own on-commit send may still be on its way is left alone this long.
UNSENT_GRACE = timedelta(seconds=5)
TRAINING_QUEUE = "training"


def task_for(scorer: str):
    """The Celery task that trains a version of ``scorer``."""
    from .tasks import self_train_task, train_model_task, train_tag_model_task

    tasks = {
        TRAINED_SCORER: train_model_task,
        SELF_TRAINED_SCORER: self_train_task,
        TAG_TRAINED_SCORER: train_tag_model_task,
    }
    if scorer not in tasks:
        raise ValueError(f"no training task for {scorer!r} versions")
    return tasks[scorer]


def send_run(version_id: int, *, skip_when_down: bool = True) -> bool:
    """Send the task of the queued run of version ``version_id``; False (logged) when the broker is down."""
    from config.celery import send_or_defer

    run = TrainingRun.objects.select_related("model_version").filter(model_version_id=version_id).first()
    if run is None or run.state != TrainingRun.State.QUEUED:
        return False
    if not send_or_defer(task_for(run.model_version.scorer), version_id, skip_when_down=skip_when_down):
        return False
    try:
        TrainingRun.objects.filter(pk=run.pk).update(sent_at=timezone.now(), sends=F("sends") + 1)
    except DatabaseError:  # the message went out; at worst the sweeper sends a harmless copy
        logger.exception("training run #%s: sent but could not record it", run.pk)
    return True


def send_run_on_commit(version_id: int) -> None:
    """In the transaction that queued the run: send its task once it commits, never raising for the broker."""
    transaction.on_commit(partial(send_run, version_id), robust=True)


def sweep_runs(*, now: datetime | None = None) -> dict[str, int]:
    """Send queued runs never sent; re-send one the broker lost (see the module docstring)."""
    from triage.work import queue_length

    now = now or timezone.now()
    queued = TrainingRun.objects.filter(state=TrainingRun.State.QUEUED).order_by("created_at")
    report = {"sent": 0, "resent": 0}
    for version_id in queued.filter(sent_at__isnull=True, created_at__lte=now - UNSENT_GRACE).values_list(
        "model_version_id", flat=True
    ):
        if not send_run(version_id, skip_when_down=False):
            break
        report["sent"] += 1
    stuck_before = now - timedelta(seconds=settings.TRIAGE_STUCK_AFTER_SECONDS)
    overdue = queued.filter(sent_at__lte=stuck_before).values_list("model_version_id", flat=True).first()
    if (
        overdue is not None
        and not TrainingRun.objects.filter(state=TrainingRun.State.RUNNING).exists()
        and queue_length(TRAINING_QUEUE) == 0
    ):
        report["resent"] += send_run(overdue, skip_when_down=False)
    if report["sent"] or report["resent"]:
        logger.info("training run sweep: %s", report)
    return report
