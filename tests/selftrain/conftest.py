from __future__ import annotations

import pytest


@pytest.fixture
def selftrain_settings(settings, tmp_path):
    """Route zero-shot with the packaged bi-encoder (fast, offline, real); artifacts in a temporary folder."""
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    settings.TRIAGE_ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings


def build(trigger: str = "manual"):
    """Request a self-trained build and run its task body here (the end-to-end test uses a real worker)."""
    from learning.selftrain import request_self_training
    from learning.tasks import self_train_task
    from mlops.models import ModelVersion

    version = request_self_training(trigger=trigger, enqueue=False)
    self_train_task.apply(args=[version.pk])
    return ModelVersion.objects.select_related("training_run").get(pk=version.pk)
