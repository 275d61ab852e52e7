from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from config.commands import DatabaseCommand
from learning.trigger import TrainingInProgress, check_trigger, request_training
from mlops.models import ModelVersion, TrainingRun

FINAL = (TrainingRun.State.SUCCEEDED, TrainingRun.State.FAILED)


class Command(DatabaseCommand):
    help = (
        "Retrain the SetFit routing model from agents' labels. By default queue a run on the training "
        "queue (a worker trains, evaluates against the champion and promotes or rejects it). "
        "--check prints whether the automatic trigger would fire; --if-needed queues only then; "
        "--inline trains in this process (no worker needed); --wait follows a queued run until it ends."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="only say whether the trigger would fire")
        parser.add_argument("--if-needed", action="store_true", help="queue only when the trigger fires")
        parser.add_argument("--inline", action="store_true", help="train here instead of on a worker")
        parser.add_argument("--wait", action="store_true", help="follow the queued run until it ends")
        parser.add_argument("--user", help="username recorded as who triggered it")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)")

    def handle(self, *args, check, if_needed, inline, wait, user, timeout, **options):
        trigger = check_trigger()
        for slug, n in trigger.counts.items():
            self.stdout.write(f"  {slug}: {n} labels")
        self.stdout.write(f"  new labels since the last training: {trigger.new_labels}")
        self.stdout.write(f"trigger: {'fires' if trigger.fire else 'not now'} ({trigger.reason})")
        if check or (if_needed and not trigger.fire):
            return
        who = None
        if user:
            who = get_user_model().objects.filter(username=user).first()
            if who is None:
                raise CommandError(f"no user {user!r}")
        try:
            version = request_training(trigger="threshold" if if_needed else "manual", user=who, enqueue=not inline)
        except TrainingInProgress as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"training {version.version} {'started here' if inline else 'queued'}")
        if inline:
            from learning.tasks import train_model_task

            train_model_task.run(version.pk)
        elif wait:
            self._follow(version, timeout)
        else:
            return
        version.refresh_from_db()
        run = TrainingRun.objects.get(model_version=version)
        if run.state == TrainingRun.State.FAILED:
            raise CommandError(f"{version.version} failed: {run.error}")
        metrics = version.metrics or {}
        self.stdout.write(self.style.SUCCESS(f"{version.version}: {version.status} — {metrics.get('reason', '')}"))

    def _follow(self, version: ModelVersion, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        shown = None
        while time.monotonic() < deadline:
            run = TrainingRun.objects.get(model_version=version)
            p = run.progress or {}
            line = f"  {run.state}: {p.get('stage', '')}"
            if p.get("total_steps"):
                line += f" {p.get('phase')} step {p.get('step')}/{p.get('total_steps')}"
                if p.get("eta_seconds") is not None:
                    line += f", about {p['eta_seconds']:.0f} s left"
            if line != shown:
                self.stdout.write(line)
                shown = line
            if run.state in FINAL:
                return
            time.sleep(2)
        raise CommandError(f"{version.version} did not finish within {timeout:.0f} s (it goes on on the worker)")
