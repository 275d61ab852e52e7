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


def test_a_pool_process_killed_mid_task_is_redelivered_and_the_ticket_still_gets_decided(teams):
    purge_queues()
    env = {"TRIAGE_ROUTING_SCORER": "embedding", "TRIAGE_TEST_ROUTING_DELAY": "120", **NO_WARMING}
    with celery_worker(queues="inference", extra_env=env) as worker:
        ticket, _ = create_ticket(TICKET)
        wait_for(lambda: status_of(ticket) == Ticket.Status.ROUTING, timeout=300, message="the task to start")
        _kill_pool_children(worker)
        # acks_late + reject_on_worker_lost: the message goes back to the queue and the worker's new
        # pool process runs it again; the claim lets that second attempt through, without the delay.
        wait_for(lambda: status_of(ticket) in DONE, timeout=300, message="the redelivered task to decide")
        log = worker.log()
    ticket.refresh_from_db()
    assert ticket.routing_attempts == 2
    assert Prediction.objects.filter(ticket=ticket).count() == 1
    assert "WorkerLostError" in log or "exited with" in log or "signal 9" in log


def test_a_worker_killed_outright_leaves_the_ticket_to_a_fresh_worker_and_the_sweeper(teams, settings):
    settings.TRIAGE_STUCK_AFTER_SECONDS = 1  # the deadline the job gets when it is sent from here
    purge_queues()
    slow = {"TRIAGE_ROUTING_SCORER": "embedding", "TRIAGE_TEST_ROUTING_DELAY": "120", **NO_WARMING}
    with celery_worker(queues="inference", extra_env=slow) as worker:
        ticket, _ = create_ticket(TICKET)
        wait_for(lambda: status_of(ticket) == Ticket.Status.ROUTING, timeout=300, message="the task to start")
        os.killpg(worker.process.pid, signal.SIGKILL)  # main process and pool at once: nobody re-queues
        worker.process.wait(30)
    assert status_of(ticket) == Ticket.Status.ROUTING  # stuck: its message is unacknowledged in Redis
    assert not Prediction.objects.filter(ticket=ticket).exists()

    fresh = {
        "TRIAGE_ROUTING_SCORER": "embedding",
        "TRIAGE_STUCK_AFTER_SECONDS": "1",
        "TRIAGE_SWEEP_SECONDS": "5",
        **NO_WARMING,
    }
    # The message the killed worker held waits in Redis for the visibility timeout; beat's sweeper
    # re-sends the overdue routing job first.
    with celery_worker(queues="default,inference", extra_env=fresh, beat=True):
        wait_for(lambda: status_of(ticket) in DONE, timeout=300, message="the sweeper's re-send to decide")
    ticket.refresh_from_db()
    assert ticket.routing_attempts == 2
    assert Prediction.objects.filter(ticket=ticket).count() == 1
