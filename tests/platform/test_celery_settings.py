"""Celery settings that bound redelivery after a worker dies (issue #15, defect 2).

Before: the visibility timeout was 3,600 s, so messages reserved by a killed worker waited an hour in
Redis' unacked set. Now it is derived from the longest inference task and the longest retry wait; every
wait a task asks for fits in it, and training is bounded by its own time limit and heartbeat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.workers import BASE_DIR, purge_queues


def settings_with(env: dict[str, str]) -> dict:
    """The Celery settings a process started with ``env`` reads."""
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'vt': s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], "
        "'limit': s.TRIAGE_INFERENCE_TIME_LIMIT, 'wait': s.TRIAGE_TASK_MAX_COUNTDOWN_SECONDS}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_visibility_timeout_is_the_longest_inference_task_plus_its_longest_retry_wait():
    assert settings_with({}) == {"vt": 420, "limit": 300, "wait": 60}
    assert settings_with({"TRIAGE_INFERENCE_TIME_LIMIT": "100"})["vt"] == 220


def test_a_visibility_timeout_shorter_than_a_task_may_run_is_refused():
    error = settings_with({"CELERY_VISIBILITY_TIMEOUT": "120"})["error"]
    assert "ImproperlyConfigured" in error and "CELERY_VISIBILITY_TIMEOUT must be >= 360" in error


def test_every_per_ticket_task_and_its_retries_fit_in_the_visibility_timeout():
    from search.tasks import index_article_task, suggest_articles_task
    from tags.tasks import score_tags_task
    from triage.tasks import route_ticket_task
    from triage.work import backoff_seconds

    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    wait = settings.TRIAGE_TASK_MAX_COUNTDOWN_SECONDS
    for task in (route_ticket_task, suggest_articles_task, score_tags_task):  # retried by run_batch
        assert task.time_limit == settings.TRIAGE_INFERENCE_TIME_LIMIT
        assert task.time_limit + wait < timeout
        assert task.acks_late
    assert max(backoff_seconds(n) for n in range(20)) == wait
    assert index_article_task.retry_backoff_max == wait


def test_training_has_its_own_bound():
    from learning.tasks import train_model_task

    assert train_model_task.time_limit == settings.TRIAGE_TRAINING_TIME_LIMIT == 4 * 3600
    assert settings.TRIAGE_TRAINING_STALE_SECONDS < settings.TRIAGE_TRAINING_TIME_LIMIT


@pytest.mark.django_db
def test_a_webhook_retry_longer_than_the_visibility_timeout_allows_is_left_to_the_sweep():
    from api.webhooks import enqueue_delivery
    from triage.work import queue_length

    purge_queues()
    enqueue_delivery(1, countdown=3600)  # a worker would hold it unacknowledged for an hour
    assert queue_length("default") == 0
    enqueue_delivery(1, countdown=5)
    assert queue_length("default") == 1
    purge_queues()
