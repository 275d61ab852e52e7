"""A training run's record: progress and log lines while it runs, failure when it stops."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mlops.models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)

# Stored on TrainingRun.log; older lines are dropped so that a long run does not bloat the row.
LOG_MAX_CHARS = 20_000


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


def record_decision(version: ModelVersion, *, promote: bool, reason: str, fields: dict[str, Any]) -> None:
    """Store a finished version's ``fields`` and promote it (``mlops.registry.promote_version``) or reject
    it, in one transaction: the champion only ever changes through ``promote_version``."""
    from mlops.registry import promote_version

    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(**fields, status=ModelVersion.Status.CANDIDATE)
        version.refresh_from_db()
        if promote:
            promote_version(version, reason=reason)
        else:
            ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.REJECTED, error="")


def stale_after() -> timedelta:
    """How long a running run may go without a heartbeat before it counts as dead."""
    return timedelta(seconds=settings.TRIAGE_TRAINING_STALE_SECONDS)


def heartbeat(run: TrainingRun):
    """When the run last reported progress (its start, or its creation, before the first report)."""
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
            run.log = (run.log + "\n" + log).strip()[-LOG_MAX_CHARS:]
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
        if heartbeat(run) < limit:
            failed += fail_run(
                run.pk,
                f"the training worker stopped reporting progress for over {int(stale_after().total_seconds())} s "
                "(killed, e.g. out of memory, or restarted); press Retrain to try again",
            )
    return failed
