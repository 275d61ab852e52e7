"""End to end with real parts: tickets routed zero-shot, labels through the dashboard and the API, the
beat-scheduled trigger, SetFit training on a real worker, promotion, and new tickets routed by it.

A Celery worker and celery beat run as subprocesses against the test database and Redis; the queues
have opaque names ("Queue A"), so only labels can teach the router where tickets go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient

from mlops.models import ModelVersion, TrainingRun
from tests import workers
from tests.retraining.builders import TOPICS, make_teams
from tests.retraining.conftest import TEST_RECIPE
from tests.workers import BASE_DIR, celery_worker, purge_queues, wait_for
from triage.models import Correction, Prediction, Ticket

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LABELLED_PER_TEAM = 10  # 8 are needed per team: the trigger waits for the last team
SLUGS = ("queue-a", "queue-b", "queue-c", "queue-d")


def worker_env(artifacts: Path) -> dict[str, str]:
    return {
        "TRIAGE_SETFIT_RECIPE": json.dumps(TEST_RECIPE),
        "TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM": "8",
        "TRIAGE_RETRAIN_MIN_NEW_LABELS": "20",
        "TRIAGE_PROMOTION_MARGIN": "0.05",
        "TRIAGE_RETRAIN_CHECK_SECONDS": "5",
        "TRIAGE_ARTIFACTS_DIR": str(artifacts),
        "TOKENIZERS_PARALLELISM": "false",
    }


@contextmanager
def celery_beat(extra_env: dict[str, str], tmp: Path):
    """``celery beat`` in a subprocess: it sends the scheduled tasks (the retrain trigger check among them)."""
    env = {
        **os.environ,
        "DATABASE_URL": workers.test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "TRIAGE_ENV": "test",
        **extra_env,
    }
    log = open(tmp / "beat.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "-s", str(tmp / "beat-schedule"), "-l", "INFO"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
        log.close()


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def create_ticket(api: APIClient, text: str) -> int:
    response = api.post("/api/tickets/", {"subject": text[:80], "body": text}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def routed_by(ticket_ids: list[int], version=None) -> bool:
    predictions = Prediction.objects.filter(ticket_id__in=ticket_ids)
    if version is not None:
        predictions = predictions.filter(model_version=version)
    return predictions.values("ticket_id").distinct().count() == len(ticket_ids)


def test_labels_retrain_promote_and_route_new_tickets_with_the_new_version(client, admin_ada, agent_alice, tmp_path):
    make_teams(SLUGS)
    artifacts = tmp_path / "artifacts"
    env = worker_env(artifacts)
    purge_queues()
    with celery_worker(extra_env=env) as worker:
        # 1. Tickets arrive through the API and are routed zero-shot (the bootstrap champion).
        api = api_for(agent_alice)
        ids = {slug: [create_ticket(api, text) for text in TOPICS[slug][:LABELLED_PER_TEAM]] for slug in SLUGS}
        all_ids = [i for slug in SLUGS for i in ids[slug]]
        wait_for(lambda: routed_by(all_ids), timeout=240, message="zero-shot routing of the first tickets")
        zero_shot = ModelVersion.objects.get(status="champion")
        assert zero_shot.scorer != "setfit"

        # 2. An admin retrains with no labels: the run fails on the worker, the error is shown, the champion stays.
        client.force_login(admin_ada)
        client.post(reverse("learning:retrain"))
        failed = ModelVersion.objects.get(scorer="setfit")
        wait_for(
            lambda: TrainingRun.objects.get(model_version=failed).state == "failed",
            timeout=120,
            message="the failed run",
        )
        page = client.get(reverse("learning:models")).content.decode()
        assert "need at least two active teams with 8 labels" in page
        assert ModelVersion.objects.get(status="champion") == zero_shot

        # 3. Agents label: corrections on the dashboard for two queues, through the API for the others.
        client.force_login(agent_alice)
        for slug in SLUGS[:2]:
            for ticket_id in ids[slug]:
                response = client.post(reverse("triage:correct", args=[ticket_id]), {"team": slug})
                assert response.status_code == 302
        for slug in SLUGS[2:]:
            for ticket_id in ids[slug]:
                response = api.post(f"/api/tickets/{ticket_id}/correct/", {"team": slug}, format="json")
                assert response.status_code == 201, response.content
        assert Correction.objects.count() == LABELLED_PER_TEAM * len(SLUGS)

        # 4. Beat fires the trigger check; the worker trains, compares and promotes.
        with celery_beat(env, tmp_path):
            version = wait_for(
                lambda: ModelVersion.objects.filter(scorer="setfit", trigger="threshold").first(),
                timeout=60,
                message="the trigger to queue a training",
            )
            wait_for(
                lambda: ModelVersion.objects.get(pk=version.pk).status in ("champion", "rejected", "failed"),
                timeout=300,
                message="training, evaluation and promotion on the worker",
            )
        version.refresh_from_db()
        run = TrainingRun.objects.get(model_version=version)
        assert run.state == "succeeded", f"{run.error}\n{run.log}\n{worker.log()[-3000:]}"
        assert version.status == "champion", version.metrics.get("reason")
        assert version.metrics["decision"] == "promoted"
        assert version.metrics["challenger"]["macro_f1"] >= version.metrics["champion"]["macro_f1"] + 0.05
        assert version.metrics["champion"]["version"] == zero_shot.version
        assert version.label_counts == {slug: LABELLED_PER_TEAM for slug in SLUGS}
        assert version.calibration["method"] == "temperature" and set(version.thresholds) == set(SLUGS)
        assert run.progress["body_total_steps"] == TEST_RECIPE["max_body_steps"]
        assert f"[{version.version}] body step" in worker.log()
        assert ModelVersion.objects.get(pk=zero_shot.pk).status == "retired"
        client.force_login(admin_ada)
        page = client.get(reverse("learning:models")).content.decode()
        assert version.version in page and "Promoted: macro-F1" in page

        # 5. New tickets are routed by the promoted version, which every prediction records.
        new = {slug: [create_ticket(api, text) for text in TOPICS[slug][LABELLED_PER_TEAM:]] for slug in SLUGS}
        new_ids = [i for slug in SLUGS for i in new[slug]]
        wait_for(lambda: routed_by(new_ids), timeout=180, message="routing of the new tickets")
        predictions = Prediction.objects.filter(ticket_id__in=new_ids).select_related("ticket")
        assert {(p.model_version_id, p.scorer) for p in predictions} == {(version.pk, "setfit")}
        right = sum(
            max(p.scores, key=p.scores.get) == slug for slug in SLUGS for p in predictions if p.ticket_id in new[slug]
        )
        assert right >= 0.75 * len(new_ids)
        assert Ticket.objects.filter(pk__in=new_ids, status__in=["new", "routing"]).count() == 0
