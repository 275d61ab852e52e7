from __future__ import annotations

import json

import pytest


def test_healthz_reports_every_part_and_is_503_without_a_worker(client, db):
    response = client.get("/healthz")
    body = json.loads(response.content)
    assert set(body["checks"]) == {"database", "pgvector", "redis", "workers"}
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["pgvector"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["workers"]["ok"] is False
    assert response.status_code == 503


@pytest.mark.django_db(transaction=True)
def test_healthz_is_green_with_a_real_worker_on_every_queue(client, worker):
    response = client.get("/healthz")
    body = json.loads(response.content)
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]["workers"]["queues"]) >= {"default", "inference", "training"}
