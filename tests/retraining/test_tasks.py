"""Task bodies (called directly, no broker): claiming, failures, redelivery, and a full run in-process."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from learning.labels import collect_labels
from learning.split import split_examples
from learning.tasks import reap_stale_runs, train_model_task
from learning.trigger import request_training
from mlops.inference.setfit_scorer import META_FILE
from mlops.models import ModelVersion, TrainingRun
from tests.retraining.builders import label_tickets
from tests.retraining.conftest import TEST_RECIPE

pytestmark = pytest.mark.django_db


@pytest.fixture
def champion(db):
    return ModelVersion.objects.create(scorer="ensemble", model_ref="m", version="ensemble-1", status="champion")


@pytest.fixture
def small_recipe(settings):
    settings.TRIAGE_SETFIT_RECIPE = TEST_RECIPE
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


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (MemoryError(), "out of memory during training"),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: out of memory"), "out of memory"),
    ],
)
def test_running_out_of_memory_fails_the_run_with_a_clear_error(
    teams, champion, small_recipe, monkeypatch, error, message
):
    # Out of memory cannot be provoked reliably on a shared machine: the training function raises it here.
    import mlops.inference.setfit_recipe as recipe

    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(recipe, "train_setfit", exhausted)
    label_tickets(teams, 8)
    version = request_training(trigger="manual", enqueue=False)
    assert train_model_task.run(version.pk) == "failed"
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.FAILED and message in version.error
    assert ModelVersion.objects.get(pk=champion.pk).status == ModelVersion.Status.CHAMPION


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
def test_a_run_trains_evaluates_calibrates_and_records_everything(teams, small_recipe, artifacts, admin_ada, settings):
    label_tickets(teams, 10)
    version = request_training(trigger="manual", user=admin_ada, enqueue=False)
    outcome = train_model_task.run(version.pk)
    version.refresh_from_db()
    run = version.training_run
    assert run.state == TrainingRun.State.SUCCEEDED, run.error
    assert outcome == version.status == "champion", version.metrics["reason"]
    assert Path(version.artifact_path, "model_head.pkl").exists()
    assert Path(version.artifact_path).parent == artifacts / "setfit"
    assert version.label_counts == {"queue-a": 10, "queue-b": 10, "queue-c": 10}
    assert len(version.data_hash) == 64 and version.training_seconds > 0
    metrics = version.metrics
    split = metrics["split"]
    assert split["train"] + split["holdout"] == 30 and split["compared"] == split["holdout"]
    assert split["trained_teams"] == ["queue-a", "queue-b", "queue-c"] and split["zero_shot_teams"] == []
    assert metrics["challenger"]["n"] == metrics["champion"]["n"] == split["holdout"]
    assert metrics["champion"]["version"].startswith("zero-shot")
    assert metrics["decision"] == "promoted" and "macro-F1" in metrics["reason"]
    assert version.calibration["method"] == "temperature"
    assert set(version.thresholds) == set(teams)
    assert "not fitted" in version.calibration["note"]
    assert run.progress["body_step"] == run.progress["body_total_steps"] == TEST_RECIPE["max_body_steps"]
    assert run.progress["stage"] == "promoted"
    assert "macro-F1 on" in run.log

    # A second training, holding out more, is compared with the first only on tickets the first never saw.
    label_tickets(teams, 4, start=10)
    settings.TRIAGE_RETRAIN_HOLDOUT = 0.5
    second = request_training(trigger="manual", enqueue=False)
    train_model_task.run(second.pk)
    second.refresh_from_db()
    assert second.training_run.state == TrainingRun.State.SUCCEEDED, second.training_run.error
    assert second.metrics["champion"]["version"] == "setfit-1"
    first_train = set(json.loads(Path(version.artifact_path, META_FILE).read_text())["train_ticket_ids"])
    held_out = {e.ticket_id for e in split_examples(collect_labels().examples, min_per_team=8, fraction=0.5).holdout}
    seen = held_out & first_train
    assert seen, "a larger held-out share must take in tickets the first version trained on"
    assert second.metrics["split"]["compared"] == second.metrics["champion"]["n"] == len(held_out) - len(seen)
    assert "the champion trained on them" in second.training_run.log
