"""Routing through real Celery workers: a created ticket gets a stored decision, and a worker killed
mid-task does not lose it (acks-late redelivery, or a fresh worker and the sweeper)."""

from __future__ import annotations

import os
import signal

import pytest

from mlops.models import ModelVersion, ScorerHealth
from tests.workers import celery_worker, purge_queues, wait_for
from triage.models import Prediction, Ticket
from triage.services import create_ticket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DONE = (Ticket.Status.ROUTED, Ticket.Status.NEEDS_TRIAGE)
# A replacement pool process must answer Celery within worker_proc_alive_timeout (4 s by default);
# loading models in worker_process_init on a busy machine takes longer, so these workers load them on
# first use instead (see the report: the setting should be raised where warming is on).
NO_WARMING = {"TRIAGE_WARM_MODELS": "0"}
TICKET = {"subject": "Charged twice", "body": "I was charged twice for my subscription this month."}


def status_of(ticket: Ticket) -> str:
    return Ticket.objects.values_list("status", flat=True).get(pk=ticket.pk)


def test_a_created_ticket_is_routed_by_the_worker_and_says_which_scorer_routed_it(teams, tmp_path, settings):
    purge_queues()
    env = {"TRIAGE_ROUTING_SCORER": "auto", "TRIAGE_NLI_MODEL": str(tmp_path / "no-nli-model-here")}
    settings.TRIAGE_ROUTING_SCORER, settings.TRIAGE_NLI_MODEL = env["TRIAGE_ROUTING_SCORER"], env["TRIAGE_NLI_MODEL"]
    with celery_worker(queues="inference,default", extra_env=env) as worker:
        ticket, created = create_ticket(TICKET)
        assert created
        wait_for(lambda: status_of(ticket) in DONE, timeout=300, message="the ticket to be decided")
        log = worker.log()
    prediction = Prediction.objects.get(ticket=ticket)
    assert prediction.model_version.scorer == prediction.scorer == "ensemble"
    assert prediction.model_version.status == ModelVersion.Status.CHAMPION
    assert prediction.chosen_team == teams["billing"]
    assert status_of(ticket) == Ticket.Status.ROUTED
    # The worker said so in its log and reported it for the admin and the dashboard.
    assert "could not be loaded" in log and "routing with ensemble" in log
    health = ScorerHealth.objects.get()
    assert (health.ok, health.active_scorer) == (False, "ensemble")
    from mlops.health import _status_cache, routing_status

    _status_cache.clear()
    status = routing_status()
    assert status and "routing with ensemble" in str(status) and status.source == "worker"


def _kill_pool_children(worker) -> list[int]:
    pids = worker.child_pids()
    assert pids, "the worker has no pool process"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def create_batch(n: int) -> list[Ticket]:
    """``n`` tickets in one transaction: their messages go out together, after all of them exist, so the
    first task claims them all in one batch."""
    from django.db import transaction

    with transaction.atomic():
        return [create_ticket({**TICKET, "subject": f"Charged twice ({i})"})[0] for i in range(n)]


def decided_once(tickets: list[Ticket]) -> bool:
    return all(status_of(t) in DONE and Prediction.objects.filter(ticket=t).count() == 1 for t in tickets)


def test_a_pool_process_killed_mid_batch_is_redelivered_and_takes_back_its_whole_batch(teams):
    purge_queues()
    env = {
        "TRIAGE_ROUTING_SCORER": "embedding",
        "TRIAGE_TEST_ROUTING_DELAY": "120",
        "TRIAGE_INFERENCE_BATCH_SIZE": "8",
        **NO_WARMING,
    }
    with celery_worker(queues="inference", extra_env=env) as worker:
        tickets = create_batch(3)
        wait_for(lambda: all(status_of(t) == Ticket.Status.ROUTING for t in tickets), timeout=300, message="the batch")
        _kill_pool_children(worker)
        # acks_late + reject_on_worker_lost: the message goes back to the queue, keeps its task id, and the
        # new pool process's run takes back the claims of the killed one (the other tickets' messages
        # find their jobs held and do nothing); the second attempt runs without the delay.
        wait_for(lambda: decided_once(tickets), timeout=300, message="the redelivered batch to decide")
        # The task logs its outcome after the decisions commit (and after tagging the batch); the other
        # tickets' messages may log theirs ("nothing to do") before it.
        log = wait_for(
            lambda: "'3 tickets: " in (text := worker.log()) and text, timeout=60, message="the run's outcome"
        )
    assert [Ticket.objects.get(pk=t.pk).routing_attempts for t in tickets] == [2, 2, 2]
    assert "WorkerLostError" in log or "exited with" in log or "signal 9" in log
    assert "succeeded" in log and "'3 tickets: " in log  # one run routed all three


def test_a_worker_killed_outright_leaves_its_batch_to_a_fresh_worker_and_the_sweeper_after_the_lease(teams, settings):
    settings.TRIAGE_STUCK_AFTER_SECONDS = 1  # the deadline the job gets when it is sent from here
    purge_queues()
    slow = {
        "TRIAGE_ROUTING_SCORER": "embedding",
        "TRIAGE_TEST_ROUTING_DELAY": "120",
        "TRIAGE_INFERENCE_BATCH_SIZE": "8",
        "TRIAGE_WORK_LEASE_SECONDS": "5",  # how long the dead worker's claims hold
        **NO_WARMING,
    }
    with celery_worker(queues="inference", extra_env=slow) as worker:
        tickets = create_batch(3)
        wait_for(lambda: all(status_of(t) == Ticket.Status.ROUTING for t in tickets), timeout=300, message="the batch")
        os.killpg(worker.process.pid, signal.SIGKILL)  # main process and pool at once: nobody re-queues
        worker.process.wait(30)
    purge_queues()  # the other tickets' messages are lost too (a Redis restart without its data)
    # Stuck: one message unacknowledged in Redis, the jobs claimed by a run that no longer exists.
    assert all(status_of(t) == Ticket.Status.ROUTING for t in tickets)
    assert not Prediction.objects.exists()
    ticket = tickets[0]

    fresh = {
        "TRIAGE_ROUTING_SCORER": "embedding",
        "TRIAGE_STUCK_AFTER_SECONDS": "1",
        "TRIAGE_SWEEP_SECONDS": "5",
        **NO_WARMING,
    }
    # The message the killed worker held waits in Redis for the visibility timeout; beat's sweeper
    # re-sends the overdue routing jobs once the dead run's lease is over, and one task takes them all.
    with celery_worker(queues="default,inference", extra_env=fresh, beat=True):
        wait_for(lambda: decided_once(tickets), timeout=300, message="the sweeper's re-send to decide")
    ticket.refresh_from_db()
    assert ticket.routing_attempts == 2
    assert [Ticket.objects.get(pk=t.pk).routing_attempts for t in tickets] == [2, 2, 2]
