from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from api.models import ApiToken, IdempotencyKey
from tests.api.conftest import caller_for
from triage.models import Ticket

TICKET = {"subject": "Refund", "body": "Please refund order 1234."}


def test_a_retry_with_the_same_key_replays_the_first_response(integration_api):
    first = integration_api.post("/api/tickets/", TICKET, HTTP_IDEMPOTENCY_KEY="k-1")
    again = integration_api.post("/api/tickets/", TICKET, HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Ticket.objects.count() == 1


def test_the_same_key_with_another_body_is_refused_with_422(integration_api):
    integration_api.post("/api/tickets/", TICKET, HTTP_IDEMPOTENCY_KEY="k-1")
    response = integration_api.post("/api/tickets/", {**TICKET, "body": "Other"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 422
    assert "different request body" in response.json()["detail"]
    assert Ticket.objects.count() == 1


def test_key_order_and_spacing_of_the_json_do_not_matter(integration_api):
    integration_api.post(
        "/api/tickets/", '{"subject": "Refund", "body": "Please refund order 1234."}', HTTP_IDEMPOTENCY_KEY="k-1"
    )
    again = integration_api.post(
        "/api/tickets/", '{"body":"Please refund order 1234.","subject":"Refund"}', HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"


def test_keys_belong_to_their_user(integration_api, agent_alice):
    other = caller_for(agent_alice, "agent")
    a = integration_api.post("/api/tickets/", TICKET, HTTP_IDEMPOTENCY_KEY="shared")
    b = other.post("/api/tickets/", TICKET, HTTP_IDEMPOTENCY_KEY="shared")
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


def test_a_rejected_request_does_not_use_up_its_key(integration_api):
    bad = integration_api.post("/api/tickets/", {"body": ""}, HTTP_IDEMPOTENCY_KEY="k-1")
    good = integration_api.post("/api/tickets/", TICKET, HTTP_IDEMPOTENCY_KEY="k-1")
    assert (bad.status_code, good.status_code) == (400, 201)
    assert IdempotencyKey.objects.get().ticket_id == good.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
def test_a_malformed_key_is_a_400(integration_api, key):
    response = integration_api.post("/api/tickets/", TICKET, HTTP_IDEMPOTENCY_KEY=key.encode().decode("latin-1"))
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not Ticket.objects.exists()


def test_a_replayed_external_id_answer_stays_200(integration_api):
    Ticket.objects.create(subject="s", body="b", external_id="crm-7")
    first = integration_api.post("/api/tickets/", {**TICKET, "external_id": "crm-7"}, HTTP_IDEMPOTENCY_KEY="k")
    again = integration_api.post("/api/tickets/", {**TICKET, "external_id": "crm-7"}, HTTP_IDEMPOTENCY_KEY="k")
    assert (first.status_code, again.status_code) == (200, 200)


def post_together(secret: str, count: int, data: dict, **headers) -> list:
    """``count`` clients, each on its own thread and database connection, POST at the same moment."""
    barrier = threading.Barrier(count)
    responses: list = []

    def send():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        barrier.wait()
        try:
            responses.append(client.post("/api/tickets/", data, format="json", **headers))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_make_one_ticket(integrator_ivan):
    """Eight clients race with the same key: the unique index serialises them, all get the same ticket."""
    _token, secret = ApiToken.issue(integrator_ivan, name="race", scope="integration")
    responses = post_together(secret, 8, TICKET, HTTP_IDEMPOTENCY_KEY="race-1")
    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.json()["id"] for r in responses}) == 1
    assert Ticket.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_one_external_id_make_one_ticket(integrator_ivan):
    _token, secret = ApiToken.issue(integrator_ivan, name="race", scope="integration")
    responses = post_together(secret, 6, {**TICKET, "external_id": "race"})
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
    assert Ticket.objects.filter(external_id="race").count() == 1
