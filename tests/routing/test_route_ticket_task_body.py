"""The task body in eager mode: which errors are retried, and that a ticket always reaches a person."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from triage import routing, tasks
from triage.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def ticket(db) -> Ticket:
    return Ticket.objects.create(subject="Help", body="Something is wrong", status=Ticket.Status.ROUTING)


def test_a_transient_error_is_retried_with_backoff_then_the_ticket_goes_to_needs_triage(ticket, monkeypatch):
    calls = []

    def flaky(ticket_ids):
        calls.append(ticket_ids)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(routing, "route_tickets", flaky)
    result = tasks.route_ticket_task.apply(args=[ticket.pk])
    assert result.get() == "gave up"
    assert len(calls) == tasks.MAX_RETRIES + 1
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.NEEDS_TRIAGE
    assert f"routing failed {tasks.MAX_RETRIES + 1} times" in ticket.routing_error
    # Capped so that a retry, held by a worker until due, fits in the visibility timeout.
    assert [tasks.backoff_seconds(n) for n in range(6)] == [5, 10, 20, 40, 60, 60]


def test_a_transient_error_that_clears_up_is_retried_until_it_works(ticket, monkeypatch):
    outcomes = iter([OperationalError("blip"), None])

    def once_flaky(ticket_ids):
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        return dict.fromkeys(ticket_ids)

    monkeypatch.setattr(routing, "route_tickets", once_flaky)
    assert tasks.route_ticket_task.apply(args=[ticket.pk]).get() == "nothing to do"
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.ROUTING  # untouched: route_tickets (stubbed here) owns the decision


def test_a_bug_is_not_retried_and_the_ticket_still_reaches_a_person(ticket, monkeypatch):
    def broken(ticket_ids):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(routing, "route_tickets", broken)
    assert tasks.route_ticket_task.apply(args=[ticket.pk]).get() == "failed"
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.NEEDS_TRIAGE
    assert ticket.routing_error == "routing failed: ZeroDivisionError: division by zero"


def test_a_finished_task_marks_its_routing_job_done_whatever_the_outcome(ticket, monkeypatch):
    from triage.models import TicketJob
    from triage.work import request_work

    request_work(ticket.pk, ["route"])
    monkeypatch.setattr(routing, "route_tickets", lambda ticket_ids: dict.fromkeys(ticket_ids))
    assert tasks.route_ticket_task.apply(args=[ticket.pk]).get() == "nothing to do"
    job = TicketJob.objects.get(ticket=ticket, kind="route")
    assert job.done_at is not None and job.error == ""


def test_a_task_that_gives_up_closes_its_job_with_the_reason(ticket, monkeypatch):
    from triage.models import TicketJob
    from triage.work import request_work

    request_work(ticket.pk, ["route"])
    monkeypatch.setattr(routing, "route_tickets", lambda ticket_ids: 1 / 0)
    assert tasks.route_ticket_task.apply(args=[ticket.pk]).get() == "failed"
    job = TicketJob.objects.get(ticket=ticket, kind="route")
    assert job.done_at is not None and "ZeroDivisionError" in job.error
