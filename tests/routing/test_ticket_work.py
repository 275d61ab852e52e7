"""The outbox of per-ticket work (``triage.work``) against the real Redis broker, with no worker
consuming: what is recorded with a ticket, what is sent after commit, and what the sweeper sends again.

The sweeper used to re-send every ticket still ``new`` after TRIAGE_STUCK_AFTER_SECONDS, again and again
while a backlog lasted (issue #15, defect 3: 2,211 routing messages for 330 tickets); it re-sent routing
only, never suggestions.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.workers import purge_queues
from triage.models import Ticket, TicketJob
from triage.services import create_ticket
from triage.work import queue_length, request_work, sweep_work

pytestmark = pytest.mark.django_db(transaction=True)
TICKET = {"subject": "Charged twice", "body": "I was charged twice for my subscription this month."}


@pytest.fixture(autouse=True)
def empty_queues(settings):
    settings.TRIAGE_STUCK_AFTER_SECONDS = 60
    settings.TRIAGE_WORK_MAX_SENDS = 3
    purge_queues()
    yield
    purge_queues()


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def open_jobs() -> int:
    return TicketJob.objects.filter(done_at__isnull=True).count()


def test_a_new_ticket_records_routing_and_suggestions_and_sends_both_after_commit():
    ticket, _ = create_ticket(TICKET)
    jobs = {job.kind: job for job in ticket.jobs.all()}
    assert set(jobs) == {"route", "suggest"}
    assert all(job.sends == 1 and job.sent_at is not None and job.done_at is None for job in jobs.values())
    assert all(job.due_at == job.sent_at + timedelta(seconds=60) for job in jobs.values())
    assert queue_length("inference") == 2


def test_nothing_is_recorded_or_sent_when_the_transaction_rolls_back():
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        create_ticket(TICKET)
        raise RuntimeError("the caller failed after creating the ticket")
    assert not Ticket.objects.exists() and not TicketJob.objects.exists()
    assert queue_length("inference") == 0


def test_a_backlog_older_than_the_deadline_is_waited_for_not_sent_again():
    for n in range(10):
        create_ticket({**TICKET, "subject": f"ticket {n}"})
    assert queue_length("inference") == 20
    # Every job is overdue, but each one's message is still in the queue: nothing is lost.
    for minutes in (2, 5, 30):
        report = sweep_work(now=later(minutes * 60))
        assert (report.sent, report.resent, report.held) == (0, 0, 20)
    assert queue_length("inference") == 20
    assert set(TicketJob.objects.values_list("sends", flat=True)) == {1}


def test_messages_the_broker_lost_are_sent_again_once_and_their_deadline_doubles():
    tickets = [create_ticket({**TICKET, "subject": f"ticket {n}"})[0] for n in range(5)]
    purge_queues()  # what a Redis restart without its data does
    report = sweep_work(now=later(61))
    assert (report.resent, report.held) == (10, 0)
    assert queue_length("inference") == 10
    job = TicketJob.objects.get(ticket=tickets[0], kind="route")
    assert job.sends == 2 and job.due_at == job.sent_at + timedelta(seconds=120)
    # Not done yet, but the copies are in the queue again: the next sweeps send nothing more.
    assert sweep_work(now=later(61)).resent == 0
    assert sweep_work(now=later(61 + 121)).resent == 0
    assert queue_length("inference") == 10


def test_only_as_many_are_sent_again_as_the_queue_can_have_lost():
    for n in range(6):
        create_ticket({**TICKET, "subject": f"ticket {n}"})
    # A worker took four messages and died (they wait in Redis' unacked set): four may be lost.
    from config.celery import app

    with app.connection_for_write() as conn:
        for _ in range(4):
            conn.default_channel.basic_get("inference", no_ack=True)
    report = sweep_work(now=later(61))
    assert (report.resent, report.held) == (4, 8)
    assert queue_length("inference") == 12


def test_work_never_sent_is_sent_by_the_next_sweep_after_a_short_grace():
    ticket = Ticket.objects.create(**TICKET)
    TicketJob.objects.create(ticket=ticket, kind="suggest", requested_at=timezone.now())
    assert sweep_work().sent == 0  # its own on-commit send may be on the way
    assert sweep_work(now=later(10)).sent == 1
    assert queue_length("inference") == 1


def test_done_work_is_never_sent_again_and_can_be_asked_for_again():
    ticket, _ = create_ticket(TICKET)
    TicketJob.objects.filter(ticket=ticket).update(done_at=timezone.now())
    purge_queues()
    assert sweep_work(now=later(3600)).as_dict() == {"sent": 0, "resent": 0, "held": 0, "gave_up": 0}
    request_work(ticket.pk, ["suggest"])  # the refresh button
    job = TicketJob.objects.get(ticket=ticket, kind="suggest")
    assert job.done_at is None and job.sends == 1 and TicketJob.objects.filter(ticket=ticket).count() == 2
    assert queue_length("inference") == 1


def test_after_its_last_send_routing_gives_up_and_the_ticket_goes_to_needs_triage():
    ticket, _ = create_ticket(TICKET)
    TicketJob.objects.filter(ticket=ticket).update(sends=3, due_at=timezone.now())
    report = sweep_work(now=later(1))
    assert report.gave_up == 2 and open_jobs() == 0
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.NEEDS_TRIAGE and "gave up after 3 sends" in ticket.routing_error
    assert "gave up" in TicketJob.objects.get(ticket=ticket, kind="suggest").error


def test_an_unknown_kind_of_work_is_refused():
    ticket = Ticket.objects.create(**TICKET)
    with pytest.raises(ValueError, match="unknown kind of ticket work: summarise"):
        request_work(ticket.pk, ["summarise"])
