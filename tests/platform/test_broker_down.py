"""Tickets are accepted while Redis is down: stored with their work (routing and suggestions) in one
transaction, answered 201, and the work is sent by the sweeper once Redis is back (issue #15, defect 1).

Redis here is the real embedded server, killed with SIGKILL and started again on its data.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import ApiToken
from tests.faults import embedded_servers, redis_down
from tests.workers import purge_queues
from triage.models import Ticket, TicketJob
from triage.work import queue_length, sweep_work

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not embedded_servers(), reason="kills the embedded Redis"),
]
TICKET = {"subject": "Charged twice", "body": "I was charged twice for my subscription this month."}


@pytest.fixture
def api(agent_alice) -> APIClient:
    _, secret = ApiToken.issue(agent_alice, name="gateway", scope=ApiToken.Scope.AGENT)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def jobs_of(ticket_id: int) -> dict[str, TicketJob]:
    return {job.kind: job for job in TicketJob.objects.filter(ticket_id=ticket_id)}


def sweep_later() -> None:
    """A sweep as beat runs it, late enough that the unsent jobs are past their grace period."""
    return sweep_work(now=timezone.now() + timedelta(seconds=30))


def test_with_redis_down_the_api_answers_201_and_the_sweeper_sends_the_work_when_redis_is_back(api):
    purge_queues()
    with redis_down():
        response = api.post("/api/tickets/", TICKET, format="json")
        assert response.status_code == 201, response.content
        ticket = Ticket.objects.get(pk=response.json()["id"])
        assert ticket.subject == TICKET["subject"] and ticket.status == Ticket.Status.NEW
        jobs = jobs_of(ticket.pk)
        assert set(jobs) == {"route", "suggest"}
        assert all(job.sent_at is None and job.sends == 0 and job.done_at is None for job in jobs.values())
    report = sweep_later()
    assert report.sent == 2 and report.resent == 0
    assert queue_length("inference") == 2
    assert all(job.sends == 1 and job.sent_at is not None for job in jobs_of(ticket.pk).values())
    # Sent once: the next sweep leaves them alone while they wait in the queue.
    assert sweep_later().sent == 0 and queue_length("inference") == 2


def test_with_redis_down_the_new_ticket_form_stores_the_ticket_and_opens_it(agent_client):
    purge_queues()
    with redis_down():
        response = agent_client.post("/tickets/new/", {**TICKET, "requester": "", "channel": "web"})
        ticket = Ticket.objects.get()
        assert response.status_code == 302 and response["Location"] == f"/tickets/{ticket.pk}/"
        assert set(jobs_of(ticket.pk)) == {"route", "suggest"}
    assert sweep_later().sent == 2


def test_a_retry_of_the_same_request_is_not_needed_and_creates_nothing_twice(api):
    """The old 500 made clients without an Idempotency-Key retry and store the ticket twice."""
    with redis_down():
        first = api.post("/api/tickets/", TICKET, format="json")
    assert first.status_code == 201
    assert Ticket.objects.count() == 1 and TicketJob.objects.count() == 2


def test_refreshing_suggestions_with_redis_down_is_recorded_and_sent_later(agent_client):
    purge_queues()
    ticket = Ticket.objects.create(**TICKET)
    with redis_down():
        response = agent_client.post(f"/tickets/{ticket.pk}/suggestions/refresh/")
        assert response.status_code < 500
        assert jobs_of(ticket.pk)["suggest"].sent_at is None
    assert sweep_later().sent == 1 and queue_length("inference") == 1


def test_after_redis_restarts_healthz_checks_the_workers_again_instead_of_failing_on_a_stale_connection(client):
    assert "error" not in client.get("/healthz").json()["checks"]["workers"]
    with redis_down():
        assert client.get("/healthz").json()["checks"]["redis"]["ok"] is False
    checks = client.get("/healthz").json()["checks"]
    assert checks["redis"]["ok"] is True
    assert "error" not in checks["workers"], checks["workers"]


def test_with_redis_down_an_admin_still_saves_a_team_description(admin_ada):
    """The new zero-shot version is only sent to a worker to show it at once; with the broker down the
    description is saved (and audited) all the same, and routing makes the version on its next ticket."""
    from triage.models import Team, TeamChange
    from triage.team_services import describe_team

    team = Team.objects.create(slug="billing", name="Billing")
    purge_queues()
    with redis_down():
        changes = describe_team(team, description="Invoices, refunds and failed card payments.", user=admin_ada)
    team.refresh_from_db()
    assert team.description == "Invoices, refunds and failed card payments."
    assert [c.field for c in changes] == ["description"] and TeamChange.objects.count() == 1
    assert queue_length("inference") == 0
