"""Requesting runs, deciding, calibrating, promoting and rolling back."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from learning.evaluation import calibrate, compare_challenger
from learning.trigger import TrainingInProgress, request_training
from mlops.models import ModelVersion, TrainingRun
from mlops.registry import promote_version

pytestmark = pytest.mark.django_db


def version(label: str, status: str, scorer: str = "setfit", artifact_path: str = "") -> ModelVersion:
    return ModelVersion.objects.create(
        scorer=scorer, model_ref="m", version=label, status=status, artifact_path=artifact_path
    )


def test_a_request_creates_a_version_and_a_queued_run_and_sends_the_task_on_commit(
    admin_ada, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        v = request_training(trigger="manual", user=admin_ada)
    assert (v.scorer, v.version, v.status, v.trigger, v.triggered_by) == (
        "setfit",
        "setfit-1",
        "training",
        "manual",
        admin_ada,
    )
    assert v.training_run.state == TrainingRun.State.QUEUED
    assert v.config["recipe"]["max_length"] == 64
    assert len(callbacks) == 1


def test_a_second_request_while_one_is_queued_is_refused():
    request_training(trigger="manual")
    with pytest.raises(TrainingInProgress, match="setfit-1"):
        request_training(trigger="manual")
    assert ModelVersion.objects.count() == 1


def test_a_bad_recipe_setting_is_refused_before_anything_is_queued(settings):
    settings.TRIAGE_SETFIT_RECIPE = {"no_such_field": 1}
    with pytest.raises(ImproperlyConfigured, match="no_such_field"):
        request_training(trigger="manual")
    assert not ModelVersion.objects.exists()


def test_the_recipe_setting_scales_the_run(settings):
    settings.TRIAGE_SETFIT_RECIPE = {"min_body_steps": 4, "max_body_steps": 4}
    assert request_training(trigger="manual").config["recipe"]["max_body_steps"] == 4


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promote"),
    [(0.80, 0.70, 0.02, True), (0.72, 0.70, 0.02, True), (0.715, 0.70, 0.02, False), (0.60, 0.70, 0.0, False)],
)
def test_the_challenger_must_beat_the_champion_by_the_margin(challenger, champion, margin, promote):
    promoted, reason = compare_challenger(challenger, champion, margin)
    assert promoted is promote
    assert f"{champion:.3f}" in reason and f"{margin:.3f}" in reason


def test_calibration_fits_a_temperature_and_a_threshold_per_team_on_held_out_predictions(settings):
    settings.TRIAGE_TARGET_PRECISION = 0.9
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"] * 20
    index = {"a": 0, "b": 1, "c": 2}
    logits = rng.normal(0, 1, (60, 3)) * 6
    for row, label in zip(logits, labels, strict=True):
        row[index[label]] += 8  # confidently right, mostly
    calibration, thresholds, details = calibrate(logits, labels, ["a", "b", "c"])
    assert calibration["method"] == "temperature" and calibration["temperature"] > 0
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert set(thresholds) == {"a", "b", "c"} and all(0 <= t <= 1 for t in thresholds.values())
    assert details["target_precision"] == 0.9


def test_promotion_retires_the_previous_champion(tmp_path):
    (tmp_path / "model_head.pkl").write_bytes(b"")
    old = version("ensemble-1", "champion", scorer="ensemble")
    new = version("setfit-1", "candidate", artifact_path=str(tmp_path))
    promote_version(new, reason="better")
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.status, new.status) == ("retired", "champion")
    assert new.promoted_at is not None
    assert ModelVersion.objects.champion() == new


@pytest.mark.parametrize("status", ["failed", "training"])
def test_a_failed_or_unfinished_version_cannot_be_promoted(status):
    champion = version("ensemble-1", "champion", scorer="ensemble")
    broken = version("setfit-1", status)
    with pytest.raises(ValidationError, match="cannot serve"):
        promote_version(broken)
    assert ModelVersion.objects.champion() == champion


def test_a_version_whose_files_are_gone_cannot_be_promoted(tmp_path):
    champion = version("ensemble-1", "champion", scorer="ensemble")
    gone = version("setfit-1", "retired", artifact_path=str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="files"):
        promote_version(gone)
    assert ModelVersion.objects.champion() == champion


def test_an_admin_rolls_back_to_any_earlier_servable_version(admin_ada, tmp_path):
    (tmp_path / "model_head.pkl").write_bytes(b"")
    zero_shot = version("ensemble-1", "retired", scorer="ensemble")
    rejected = version("setfit-1", "rejected", artifact_path=str(tmp_path))
    version("setfit-2", "champion", artifact_path=str(tmp_path))
    promote_version(rejected, user=admin_ada, reason="rollback")
    assert ModelVersion.objects.champion() == rejected
    promote_version(zero_shot, user=admin_ada, reason="rollback")
    assert ModelVersion.objects.champion() == zero_shot
    assert ModelVersion.objects.filter(status="champion").count() == 1
