"""The automatic trigger: enough labels per active team, enough new labels, no run in progress."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from learning.tasks import check_retrain_trigger_task
from learning.trigger import check_trigger
from mlops.models import ModelVersion, TrainingRun
from tests.retraining.builders import label_tickets, make_ticket
from triage.models import Correction, Team
from triage.services import record_label

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM = 4
    settings.TRIAGE_RETRAIN_MIN_NEW_LABELS = 10


def test_beat_checks_the_trigger_on_a_schedule():
    entry = django_settings.CELERY_BEAT_SCHEDULE["check-retrain-trigger"]
    assert entry["task"] == "learning.tasks.check_retrain_trigger_task"
    assert entry["schedule"] == django_settings.TRIAGE_RETRAIN_CHECK_SECONDS


def test_it_waits_until_every_active_team_has_enough_labels(teams):
    label_tickets({k: teams[k] for k in ("queue-a", "queue-b")}, 6)
    label_tickets({"queue-c": teams["queue-c"]}, 3)
    check = check_trigger()
    assert not check.fire
    assert "queue-c (3)" in check.reason
    assert check.counts == {"queue-a": 6, "queue-b": 6, "queue-c": 3}


def test_an_inactive_team_does_not_hold_the_trigger_back(teams):
    label_tickets({k: teams[k] for k in ("queue-a", "queue-b")}, 6)
    Team.objects.filter(slug="queue-c").update(active=False)
    assert check_trigger().fire


def test_it_fires_with_enough_labels_everywhere_and_enough_new_ones(teams):
    label_tickets(teams, 4)
    check = check_trigger()
    assert check.fire, check.reason
    assert check.new_labels == 12


def test_it_counts_only_labels_that_arrived_since_the_last_training(teams):
    label_tickets(teams, 4)
    ModelVersion.objects.create(scorer="setfit", model_ref="m", version="setfit-1", status="rejected")
    check = check_trigger()
    assert not check.fire and check.new_labels == 0
    for n, slug in enumerate(["queue-a", "queue-b", "queue-c"] * 4):
        record_label(make_ticket(f"new ticket {n}", 9000 + n), teams[slug], kind=Correction.Kind.ACCEPTED)
    assert check_trigger().fire


def test_it_does_not_fire_while_a_run_is_queued_or_running(teams):
    label_tickets(teams, 4)
    # Not a SetFit row, so that the labels above still count as new: only the run holds the trigger back.
    version = ModelVersion.objects.create(scorer="nli", model_ref="m", version="x", status="training")
    TrainingRun.objects.create(model_version=version, state=TrainingRun.State.RUNNING)
    check = check_trigger()
    assert not check.fire and "already running" in check.reason


def test_the_beat_task_queues_one_training_when_the_trigger_fires(teams, django_capture_on_commit_callbacks):
    label_tickets(teams, 4)
    with django_capture_on_commit_callbacks() as callbacks:
        assert check_retrain_trigger_task.run() == "queued setfit-1"
    version = ModelVersion.objects.get(version="setfit-1")
    assert version.trigger == "threshold" and version.status == ModelVersion.Status.TRAINING
    assert version.training_run.state == TrainingRun.State.QUEUED
    assert len(callbacks) == 1
    assert check_retrain_trigger_task.run().startswith("not now")
