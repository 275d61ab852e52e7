"""Task bodies (called directly, no broker): claiming, failures, redelivery, and a full run in-process."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from mlops.models import ModelVersion, TrainingRun
from mlops.tasks import reap_stale_runs, train_model_task
from mlops.training import request_training
from tests.retraining.builders import label_tickets
from tests.retraining.conftest import TEST_RECIPE

pytestmark = pytest.mark.django_db


@pytest.fixture
def champion(db):
    return ModelVersion.objects.create(scorer="ensemble", model_ref="m", version="ensemble-1", status="champion")


@pytest.fixture
def small_recipe(settings):
    import json

    settings.TRIAGE_SETFIT_RECIPE = json.dumps(TEST_RECIPE)
    settings.TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM = 8


def test_too_few_labels_fail_the_run_with_the_reason_and_the_champion_keeps_serving(teams, champion, small_recipe):
    label_tickets({"queue-a": teams["queue-a"]}, 10)
    label_tickets({"queue-b": teams["queue-b"]}, 3)
    version = request_training(trigger="manual", enqueue=False)
    assert train_model_task.run(version.pk) == "failed"
    version.refresh_from_db()
    run = version.training_run
    assert version.status == ModelVersion.Status.FAILED
    assert "at least two active teams with 8 labels" in version.error
    assert run.state == TrainingRun.State.FAILED and run.error == version.error and run.finished_at
    assert version.label_counts == {"queue-a": 10, "queue-b": 3}
    champion.refresh_from_db()
    assert champion.status == ModelVersion.Status.CHAMPION


def test_an_unexpected_error_is_recorded_with_its_traceback_in_the_log(teams, champion, small_recipe, artifacts):
    label_tickets(teams, 8)
    version = request_training(trigger="manual", enqueue=False)
    ModelVersion.objects.filter(pk=version.pk).update(config={**version.config, "base_model": "/no/such/model"})
    assert train_model_task.run(version.pk) == "failed"
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED
    assert "/no/such/model" in version.error
    assert "Traceback" in version.training_run.log
    champion.refresh_from_db()
    assert champion.status == ModelVersion.Status.CHAMPION


def test_a_redelivered_message_does_nothing_while_the_run_is_alive(teams):
    version = request_training(trigger="manual", enqueue=False)
    TrainingRun.objects.filter(model_version=version).update(
        state=TrainingRun.State.RUNNING, progress={"heartbeat": timezone.now().isoformat()}
    )
    assert train_model_task.run(version.pk) == "already running"
    assert TrainingRun.objects.get(model_version=version).state == TrainingRun.State.RUNNING


def test_a_redelivered_message_of_a_run_whose_worker_died_fails_it(teams):
    version = request_training(trigger="manual", enqueue=False)
    long_ago = (timezone.now() - timedelta(hours=2)).isoformat()
    TrainingRun.objects.filter(model_version=version).update(
        state=TrainingRun.State.RUNNING, progress={"heartbeat": long_ago}
    )
    assert train_model_task.run(version.pk) == "failed: stale"
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED and "died" in version.error


def test_the_beat_check_fails_runs_that_stopped_reporting(teams):
    version = request_training(trigger="manual", enqueue=False)
    long_ago = (timezone.now() - timedelta(hours=2)).isoformat()
    TrainingRun.objects.filter(model_version=version).update(
        state=TrainingRun.State.RUNNING, progress={"heartbeat": long_ago}
    )
    assert reap_stale_runs() == 1
    assert "stopped reporting progress" in TrainingRun.objects.get(model_version=version).error


@pytest.mark.slow
def test_a_run_trains_evaluates_calibrates_and_records_everything(teams, small_recipe, artifacts, admin_ada):
    label_tickets(teams, 10)
    version = request_training(trigger="manual", user=admin_ada, enqueue=False)
    outcome = train_model_task.run(version.pk)
    version.refresh_from_db()
    run = version.training_run
    assert run.state == TrainingRun.State.SUCCEEDED, run.error
    assert outcome == version.status and version.status in ("champion", "rejected")
    assert Path(version.artifact_path, "model_head.pkl").exists()
    assert Path(version.artifact_path).parent == artifacts / "setfit"
    assert version.label_counts == {"queue-a": 10, "queue-b": 10, "queue-c": 10}
    assert len(version.data_hash) == 64 and version.training_seconds > 0
    metrics = version.metrics
    assert metrics["split"] == {
        "train": 24,
        "holdout": 6,
        "trained_teams": ["queue-a", "queue-b", "queue-c"],
        "zero_shot_teams": [],
    }
    assert metrics["challenger"]["n"] == metrics["champion"]["n"] == 6
    assert metrics["champion"]["version"].startswith("zero-shot")
    assert metrics["decision"] in ("promoted", "rejected") and "macro-F1" in metrics["reason"]
    assert version.calibration["method"] == "temperature"
    assert set(version.thresholds) == set(teams)
    assert "not fitted: 6 held-out labels" in version.calibration["note"]
    assert run.progress["body_step"] == run.progress["body_total_steps"] == TEST_RECIPE["max_body_steps"]
    assert run.progress["stage"] == metrics["decision"]
    assert "held-out macro-F1" in run.log
