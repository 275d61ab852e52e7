"""Micro-batched routing: which jobs a task claims (``triage.work.claim_batch``), what the sweeper does
with claimed jobs, a batch routed by one task, and decisions equal to routing each ticket alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.workers import purge_queues
from triage import routing, tasks
from triage.models import Prediction, Ticket, TicketJob
from triage.work import claim_batch, finish_work, release_batch, request_work, sweep_work

pytestmark = pytest.mark.django_db(transaction=True)

TEXTS = [
    ("Charged twice", "I was charged twice for my subscription this month."),
    ("Cannot log in", "My two-factor code never arrives and I am locked out of my account."),
    ("Parcel missing", "The tracking says delivered but there is no parcel at my door."),
    ("Refund", "Please refund the renewal I did not want."),
    ("Password", "The password reset email never came, I checked spam."),
    ("Wrong address", "My order went to my old address, can you redirect it?"),
    ("hi", "help"),
    ("Invoice", "Where can I download the invoice for last month? Our accountant needs it for the audit."),
]


@pytest.fixture(autouse=True)
def fresh_pacer():
    """Batch sizes here are the settings', not what earlier tests' batches cost this process."""
    from mlops.inference import batching

    batching._pacer = None
    yield
    batching._pacer = None


def waiting(n: int, kind: str = "route", start: int = 0) -> list[int]:
    """``n`` tickets with an open, unsent ``kind`` job each (no broker involved), oldest first."""
    ids = []
    for i in range(start, start + n):
        subject, body = TEXTS[i % len(TEXTS)]
        ticket = Ticket.objects.create(subject=subject, body=body)
        TicketJob.objects.create(ticket=ticket, kind=kind, requested_at=timezone.now() + timedelta(microseconds=i))
        ids.append(ticket.pk)
    return ids


def job(ticket_id: int, kind: str = "route") -> TicketJob:
    return TicketJob.objects.get(ticket_id=ticket_id, kind=kind)


# --- Claims ---------------------------------------------------------------------------------------
def test_a_task_claims_its_own_ticket_first_then_the_oldest_waiting_up_to_the_batch_size(settings):
    settings.TRIAGE_WORK_LEASE_SECONDS = 60
    ids = waiting(6)
    assert claim_batch("route", ids[4], "run-a", limit=3) == [ids[4], ids[0], ids[1]]
    claimed = job(ids[4])
    assert claimed.claim == "run-a"
    assert timedelta(seconds=59) < claimed.claimed_until - timezone.now() <= timedelta(seconds=60)
    # Another run never gets a claimed job: its own ticket is held, so it takes the next waiting ones.
    assert claim_batch("route", ids[0], "run-b", limit=3) == [ids[2], ids[3], ids[5]]
    assert claim_batch("route", ids[1], "run-c", limit=3) == []


def test_a_done_job_is_not_claimed_and_kinds_do_not_mix():
    ids = waiting(2)
    other = waiting(1, kind="suggest", start=2)
    finish_work(ids[0], "route")
    assert claim_batch("route", ids[0], "run-a", limit=10) == [ids[1]]
    assert claim_batch("suggest", other[0], "run-a", limit=10) == other


def test_work_sent_without_a_job_row_is_still_done_for_its_own_ticket():
    ticket = Ticket.objects.create(subject="Help", body="Something is wrong")
    assert claim_batch("route", ticket.pk, "run-a", limit=5) == [ticket.pk]


def test_an_expired_lease_is_claimed_again_and_a_redelivered_run_takes_back_its_own(settings):
    settings.TRIAGE_WORK_LEASE_SECONDS = 60
    ids = waiting(3)
    assert claim_batch("route", ids[0], "dead-run", limit=2) == ids[:2]
    # The same task id again (its worker died, the message was redelivered): its claims are its own.
    assert claim_batch("route", ids[0], "dead-run", limit=2) == ids[:2]
    assert claim_batch("route", ids[0], "other-run", limit=5) == [ids[2]]
    TicketJob.objects.filter(claim="dead-run").update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert claim_batch("route", ids[1], "later-run", limit=5) == [ids[1], ids[0]]
    assert set(TicketJob.objects.filter(ticket_id__in=ids[:2]).values_list("claim", flat=True)) == {"later-run"}


def test_released_jobs_go_to_the_next_task_and_a_claim_dropped_by_a_new_request_is_not_finished(settings):
    ids = waiting(2)
    claim_batch("route", ids[0], "run-a", limit=2)
    assert release_batch("route", ids, "run-a") == 2
    assert claim_batch("route", ids[1], "run-b", limit=2) == [ids[1], ids[0]]
    # Asked for again while run-b computes (the refresh button): run-b's result is not the new request's.
    request_work(ids[0], ["route"])
    assert not finish_work(ids[0], "route", claim="run-b")
    assert finish_work(ids[1], "route", claim="run-b")
    assert job(ids[0]).done_at is None and job(ids[1]).done_at is not None


def test_a_batch_not_full_waits_for_jobs_that_arrive_meanwhile():
    import threading

    ids = waiting(1)
    late: list[int] = []

    def arrive():
        from django.db import connection

        late.extend(waiting(2, start=1))
        connection.close()

    timer = threading.Timer(0.1, arrive)
    timer.start()
    claimed = claim_batch("route", ids[0], "run-a", limit=3, wait_seconds=10)
    timer.join()
    assert claimed == ids + late


# --- The sweeper and claimed jobs ----------------------------------------------------------------
def test_the_sweeper_leaves_a_claimed_job_alone_until_its_lease_is_over_then_sends_it_again(settings):
    settings.TRIAGE_STUCK_AFTER_SECONDS = 60
    settings.TRIAGE_WORK_LEASE_SECONDS = 600
    settings.TRIAGE_WORK_MAX_SENDS = 3
    purge_queues()
    ids = waiting(3)
    now = timezone.now()
    TicketJob.objects.filter(ticket_id__in=ids).update(sent_at=now, due_at=now + timedelta(seconds=60), sends=1)
    claim_batch("route", ids[0], "dead-run", limit=3)  # then its worker died; the messages are gone
    report = sweep_work(now=now + timedelta(seconds=120))
    assert (report.resent, report.held, report.gave_up) == (0, 0, 0)
    report = sweep_work(now=now + timedelta(seconds=601))
    assert report.resent == 3
    from triage.work import queue_length

    assert queue_length("inference") == 3
    # A job on its last send is given up only once nobody holds it.
    TicketJob.objects.filter(ticket_id__in=ids).update(sends=3, due_at=now, claimed_until=now)
    claim_batch("route", ids[0], "live-run", limit=1)
    assert sweep_work(now=now + timedelta(seconds=300)).gave_up == 2
    assert job(ids[0]).done_at is None
    purge_queues()


# --- A batch routed by one task ------------------------------------------------------------------
def test_a_batch_is_sized_to_end_well_inside_the_time_limit(settings):
    from mlops.inference.batching import BATCH_TIME_SHARE, FIRST_BATCH, batch_pacer
    from triage.work import batch_options, record_batch

    settings.TRIAGE_INFERENCE_BATCH_SIZE = 64
    settings.TRIAGE_INFERENCE_TIME_LIMIT = 300
    assert batch_options("route")["limit"] == FIRST_BATCH  # nothing timed yet
    record_batch("route", 8, 8 * 10.0)  # a busy CPU: 10 s a ticket, 60 s of budget
    assert batch_pacer().budget == 300 * BATCH_TIME_SHARE
    assert batch_options("route")["limit"] == 6
    record_batch("suggest", 8, 8 * 0.1)
    assert batch_options("suggest")["limit"] == 64  # the setting caps it


def test_one_task_routes_every_waiting_ticket_and_closes_each_job(teams, embedding_routing):
    embedding_routing.TRIAGE_INFERENCE_BATCH_SIZE = 5
    ids = waiting(7)
    summary = tasks.route_ticket_task.apply(args=[ids[3]]).get()
    assert summary.startswith("5 tickets: ")
    routed = set(Prediction.objects.values_list("ticket_id", flat=True))
    assert routed == set(ids[:5])
    assert all(job(pk).done_at is not None for pk in routed)
    assert TicketJob.objects.filter(done_at__isnull=True).count() == 2
    # The message of a ticket already in that batch routes what is still waiting.
    assert tasks.route_ticket_task.apply(args=[ids[0]]).get().startswith("2 tickets: ")
    assert tasks.route_ticket_task.apply(args=[ids[1]]).get() == "nothing to do"
    assert Prediction.objects.count() == 7 and not Ticket.objects.filter(status=Ticket.Status.ROUTING).exists()


def test_batch_size_one_routes_one_ticket_per_task(teams, embedding_routing):
    embedding_routing.TRIAGE_INFERENCE_BATCH_SIZE = 1
    ids = waiting(3)
    assert tasks.route_ticket_task.apply(args=[ids[2]]).get() in {d.value for d in Prediction.Decision}
    assert list(Prediction.objects.values_list("ticket_id", flat=True)) == [ids[2]]


def test_a_bug_on_one_ticket_of_a_batch_costs_only_that_ticket_its_decision(teams, embedding_routing, monkeypatch):
    embedding_routing.TRIAGE_INFERENCE_BATCH_SIZE = 4
    ids = waiting(4)
    real = routing.route_tickets

    def breaks_on_the_third(ticket_ids):
        if ids[2] in ticket_ids:
            raise ZeroDivisionError("a bug this ticket's data triggers")
        return real(ticket_ids)

    monkeypatch.setattr(routing, "route_tickets", breaks_on_the_third)
    assert tasks.route_ticket_task.apply(args=[ids[0]]).get().startswith("4 tickets: ")
    assert set(Prediction.objects.values_list("ticket_id", flat=True)) == {ids[0], ids[1], ids[3]}
    broken = Ticket.objects.get(pk=ids[2])
    assert broken.status == Ticket.Status.NEEDS_TRIAGE and "ZeroDivisionError" in broken.routing_error
    assert not TicketJob.objects.filter(done_at__isnull=True).exists()


# --- The same decisions as one by one -----------------------------------------------------------
@pytest.mark.parametrize("scorer", ["ensemble", "embedding"])
def test_a_batch_gets_the_decisions_each_ticket_gets_alone(teams, settings, scorer):
    settings.TRIAGE_ROUTING_SCORER = scorer
    alone = [Ticket.objects.create(subject=s, body=b) for s, b in TEXTS]
    together = [Ticket.objects.create(subject=s, body=b) for s, b in TEXTS]
    singles = [routing.route_ticket(t.pk) for t in alone]
    batch = routing.route_tickets([t.pk for t in together])
    assert list(batch) == [t.pk for t in together]
    for one, many in zip(singles, batch.values(), strict=True):
        assert many is not None and one is not None
        assert (many.decision, many.chosen_team_id, many.model_version_id) == (
            one.decision,
            one.chosen_team_id,
            one.model_version_id,
        )
        assert many.scores.keys() == one.scores.keys()
        for slug, p in one.scores.items():
            assert many.scores[slug] == pytest.approx(p, abs=1e-5)
        assert many.confidence == pytest.approx(one.confidence, abs=1e-5)
    assert len({p.decision for p in singles}) > 1 or len({p.chosen_team_id for p in singles}) > 1
