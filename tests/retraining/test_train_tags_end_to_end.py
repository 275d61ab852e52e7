"""End to end with real parts: an admin presses "Train tags", a real training worker (Celery, Redis, the test
database) trains the set's SetFit head, and the registry's progress panel shows its steps live, then its outcome."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from mlops.models import ModelVersion, TrainingRun, tag_task
from tests.retraining.builders import label_topics
from tests.workers import celery_worker, purge_queues, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STEPS = 4  # enough body steps (several seconds each on a shared CPU) for the panel to be seen mid-run


def test_train_tags_runs_on_the_training_worker_with_live_step_progress(
    admin_client_ada, agent_alice, settings, tmp_path
):
    settings.TRIAGE_TAG_SETFIT_STEPS = STEPS  # recorded on the version when it is queued, as the recipe is
    settings.TRIAGE_RETRAIN_HOLDOUT = 0.3
    label_topics(agent_alice)
    purge_queues()
    env = {"TRIAGE_ARTIFACTS_DIR": str(tmp_path), "TRIAGE_TAG_SCORER": "embedding", "TOKENIZERS_PARALLELISM": "false"}
    with celery_worker("training", extra_env=env) as worker:
        response = admin_client_ada.post(reverse("learning:train_tags", args=["topics"]), follow=True)
        assert "Tag training" in response.content.decode()
        version = ModelVersion.objects.get(task=tag_task("topics"))
        run = TrainingRun.objects.get(model_version=version)
        panels: list[str] = []

        def finished() -> bool:
            html = admin_client_ada.get(reverse("learning:training_run", args=[run.pk])).content.decode()
            panels.append(html)
            return 'data-state="succeeded"' in html or 'data-state="failed"' in html

        wait_for(finished, timeout=600, interval=0.5, message=f"the tag run to end:\n{worker.log()[-3000:]}")
    run.refresh_from_db()
    version.refresh_from_db()
    assert run.state == TrainingRun.State.SUCCEEDED, run.error
    assert version.status in (ModelVersion.Status.CHAMPION, ModelVersion.Status.REJECTED)
    live = [p for p in panels if 'hx-trigger="every 2s"' in p and re.search(r"body step <strong>\d+</strong>", p)]
    assert live, "no panel showed a body step while the run was running"
    steps = {int(m) for p in live for m in re.findall(r"body step <strong>(\d+)</strong> of <strong>4</strong>", p)}
    assert steps and steps <= set(range(1, STEPS + 1))
    assert f"fine-tuning ran {STEPS} of {STEPS} steps" in panels[-1]
    assert "serving scorer's decision: per-tag thresholds fitted for F1" in run.log
