"""The model registry page: admins only; versions with their numbers, retrain, live progress, rollback."""

from __future__ import annotations

import pytest
from django.urls import reverse

from mlops.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db

PAGES = [
    ("get", "learning:models", False),
    ("post", "learning:retrain", False),
    ("get", "learning:training_run", True),
    ("get", "learning:model_version", True),
    ("post", "learning:rollback", True),
]


@pytest.fixture
def versions(admin_ada, tmp_path):
    (tmp_path / "model_head.pkl").write_bytes(b"")
    zero_shot = ModelVersion.objects.create(
        scorer="ensemble", model_ref="packaged", version="ensemble-abc", status="retired", trigger="bootstrap"
    )
    champion = ModelVersion.objects.create(
        scorer="setfit",
        model_ref="packaged:all-MiniLM-L6-v2",
        version="setfit-1",
        status="champion",
        artifact_path=str(tmp_path),
        trigger="threshold",
        label_counts={"queue-a": 10, "queue-b": 9},
        data_hash="0123456789abcdef" * 4,
        training_seconds=42.0,
        metrics={
            "decision": "promoted",
            "reason": "macro-F1 0.910 beats the champion’s 0.520 by 0.390 (margin 0.020)",
            "challenger": {"accuracy": 0.92, "macro_f1": 0.91, "n": 6, "f1_per_team": {"queue-a": 0.9}},
            "champion": {"accuracy": 0.5, "macro_f1": 0.52, "n": 6, "version": "ensemble-abc"},
            "split": {"train": 13, "holdout": 6, "trained_teams": ["queue-a", "queue-b"], "zero_shot_teams": []},
            "labels": {"labelled_tickets": 21, "used": 19, "excluded": {"team deleted": 2}, "remapped": {}},
        },
        calibration={"method": "temperature", "temperature": 1.3, "n": 25, "nll_before": 0.4, "nll_after": 0.3},
    )
    failed = ModelVersion.objects.create(
        scorer="setfit",
        model_ref="m",
        version="setfit-2",
        status="failed",
        trigger="manual",
        triggered_by=admin_ada,
        error="out of memory during training",
    )
    TrainingRun.objects.create(model_version=failed, state="failed", error="out of memory during training")
    return {"zero_shot": zero_shot, "champion": champion, "failed": failed}


def url(name, with_pk, versions=None):
    if not with_pk:
        return reverse(name)
    if name == "learning:training_run":
        return reverse(name, args=[TrainingRun.objects.first().pk])
    return reverse(name, args=[versions["zero_shot"].pk])


@pytest.mark.parametrize(("method", "name", "with_pk"), PAGES)
def test_agents_get_403_and_anonymous_visitors_the_login_page(client, agent_alice, versions, method, name, with_pk):
    target = url(name, with_pk, versions)
    assert getattr(client, method)(target).status_code == 302
    client.force_login(agent_alice)
    assert getattr(client, method)(target).status_code == 403
    assert ModelVersion.objects.get(pk=versions["champion"].pk).status == "champion"


def test_the_page_lists_versions_with_metrics_label_counts_hash_time_and_who_triggered(admin_client_ada, versions):
    page = admin_client_ada.get(reverse("learning:models")).content.decode()
    for text in ["setfit-1", "setfit-2", "ensemble-abc", "0123456789", "42 s", "0.910", "0.520", "ada", "threshold"]:
        assert text in page
    assert "beats the champion" in page
    assert "out of memory during training" in page  # the failed run's error


def test_the_version_page_shows_the_comparison_labels_report_and_calibration(admin_client_ada, versions):
    page = admin_client_ada.get(reverse("learning:model_version", args=[versions["champion"].pk])).content.decode()
    assert "Excluded, team deleted: 2" in page
    assert "Temperature <strong>1.3</strong>" in page
    assert "ensemble-abc" in page and "0.910" in page
    failed = admin_client_ada.get(reverse("learning:model_version", args=[versions["failed"].pk])).content.decode()
    assert "Training failed: out of memory during training" in failed


def test_retrain_queues_a_run_and_refuses_a_second(admin_client_ada, admin_ada, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client_ada.post(reverse("learning:retrain"), follow=True)
    version = ModelVersion.objects.get(status="training")
    assert (version.trigger, version.triggered_by) == ("manual", admin_ada)
    assert len(callbacks) == 1
    assert f"Training {version.version} queued" in response.content.decode()
    again = admin_client_ada.post(reverse("learning:retrain"), follow=True).content.decode()
    assert "already queued" in again
    assert ModelVersion.objects.filter(status="training").count() == 1


def test_the_progress_panel_polls_while_running_and_asks_for_a_reload_when_done(admin_client_ada, versions):
    run = TrainingRun.objects.create(
        model_version=ModelVersion.objects.create(
            scorer="setfit", model_ref="m", version="setfit-3", status="training"
        ),
        state="running",
        progress={"stage": "training", "phase": "body", "step": 12, "total_steps": 60, "epoch": 1.5, "eta_seconds": 40},
    )
    panel = admin_client_ada.get(reverse("learning:training_run", args=[run.pk]))
    html = panel.content.decode()
    assert 'hx-trigger="every 2s"' in html and "step <strong>12</strong> of <strong>60</strong>" in html
    assert "about <strong>40 s</strong> left" in html
    TrainingRun.objects.filter(pk=run.pk).update(state="succeeded")
    done = admin_client_ada.get(reverse("learning:training_run", args=[run.pk]) + "?was=active", HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"
    assert "every 2s" not in done.content.decode()


def test_an_admin_rolls_back_to_an_earlier_version(admin_client_ada, versions):
    response = admin_client_ada.post(reverse("learning:rollback", args=[versions["zero_shot"].pk]), follow=True)
    assert "ensemble-abc is the champion again" in response.content.decode()
    assert ModelVersion.objects.get(status="champion") == versions["zero_shot"]
    assert ModelVersion.objects.get(pk=versions["champion"].pk).status == "retired"


def test_rolling_back_to_a_failed_version_is_refused_with_the_reason(admin_client_ada, versions):
    response = admin_client_ada.post(reverse("learning:rollback", args=[versions["failed"].pk]), follow=True)
    assert "Cannot roll back" in response.content.decode()
    assert ModelVersion.objects.get(status="champion") == versions["champion"]


def test_the_models_link_in_the_top_bar_leads_here(admin_client_ada, versions):
    page = admin_client_ada.get(reverse("triage:queue")).content.decode()
    assert f'href="{reverse("learning:models")}"' in page
