"""End to end with real parts: the Self-train button pressed while Redis is down, the request kept and
sent by beat's sweeper once Redis is back, the build run on a real worker's ``training`` queue and
promoted with every guard named; then beat's trigger firing after ``TRIAGE_SELFTRAIN_EVERY`` new tickets.

A Celery worker with beat runs as a subprocess against the test database and Redis; the stream is the
demo help desk's tickets (texts only).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from mlops.models import ModelVersion, TrainingRun
from tests.faults import embedded_servers, redis_down
from tests.selftrain.builders import demo_teams, store_demo_stream
from tests.workers import celery_worker, purge_queues, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not embedded_servers(), reason="kills the embedded Redis"),
]
FOUR = ["billing", "account", "orders", "setup"]
EVERY = 100


def finished(version: ModelVersion) -> TrainingRun | None:
    run = TrainingRun.objects.get(model_version=version)
    return run if run.state in ("succeeded", "failed") else None


def test_the_button_survives_redis_down_and_the_trigger_fires_at_n_tickets(admin_client_ada, tmp_path):
    demo_teams(FOUR)
    store_demo_stream(FOUR)
    purge_queues()
    with redis_down():
        response = admin_client_ada.post(reverse("learning:self_train"), follow=True)
        assert "Self-trained build self-trained-1 queued." in response.content.decode()
    first = ModelVersion.objects.get(scorer="self-trained")
    assert TrainingRun.objects.get(model_version=first).sent_at is None

    env = {
        "TRIAGE_ROUTING_SCORER": "embedding",
        "TRIAGE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "TRIAGE_SELFTRAIN_EVERY": str(EVERY),
        "TRIAGE_RETRAIN_CHECK_SECONDS": "5",
        "TRIAGE_SWEEP_SECONDS": "5",
        "TRIAGE_WARM_MODELS": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }
    with celery_worker(extra_env=env, beat=True) as worker:
        # The sweeper sends the kept request; the build runs on the training queue, with progress on the page.
        run = wait_for(lambda: finished(first), timeout=600, message=f"the first build\n{worker.log()[-3000:]}")
        first.refresh_from_db()
        assert run.state == "succeeded" and run.sends >= 1
        assert (first.status, first.metrics["guard"]) == ("champion", "all"), first.metrics
        page = admin_client_ada.get(reverse("learning:model_version", args=[first.pk])).content.decode()
        for guard in ("agreement", "volume", "labels"):
            assert f"<td>{guard}</td>" in page
        assert "self_train_task" in worker.log()

        # EVERY new tickets later, beat's trigger queues the next build by itself.
        store_demo_stream(FOUR[:2] + FOUR[3:])
        second = wait_for(
            lambda: ModelVersion.objects.filter(scorer="self-trained").exclude(pk=first.pk).first(),
            timeout=120,
            message="the trigger",
        )
        assert second.trigger == "tickets"
        wait_for(lambda: finished(second), timeout=600, message=f"the second build\n{worker.log()[-3000:]}")
        second.refresh_from_db()
        assert second.status in ("champion", "rejected") and second.metrics["guard"] in (
            "all",
            "agreement",
            "volume",
            "labels",
        )
    purge_queues()
