"""Routing tasks: thin wrappers around ``triage.routing``; they take ids and are safe to run twice.

``route_ticket_task`` runs on the ``inference`` queue (``CELERY_TASK_ROUTES``), acknowledged late: a
worker killed mid-task leaves the message to be redelivered, and the claim in ``route_ticket`` makes
the second run harmless. Database hiccups and a model that cannot load yet are retried with
exponential backoff; after the last retry the ticket goes to needs-triage with the error, never lost.
``requeue_stuck_tickets_task`` (beat, every ``TRIAGE_SWEEP_SECONDS``) re-queues tickets left in
``routing`` or ``new`` longer than ``TRIAGE_STUCK_AFTER_SECONDS``.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError, InterfaceError, OperationalError

from mlops.inference.encoders import ModelUnavailable

from . import routing

logger = logging.getLogger(__name__)

# Errors worth another try: the database or the broker blinked, a model file was not there yet.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ModelUnavailable, MemoryError)
MAX_RETRIES = 4
BACKOFF_BASE_SECONDS = 5
BACKOFF_MAX_SECONDS = 300


def backoff_seconds(retries: int) -> int:
    """5, 10, 20, 40 ... seconds, capped."""
    return min(BACKOFF_BASE_SECONDS * 2**retries, BACKOFF_MAX_SECONDS)


@shared_task(bind=True, name="triage.tasks.route_ticket_task", acks_late=True, max_retries=MAX_RETRIES)
def route_ticket_task(self, ticket_id: int) -> str:
    """Route ticket ``ticket_id``; returns the decision, or why nothing was decided."""
    try:
        prediction = routing.route_ticket(ticket_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            try:
                routing.give_up_routing(ticket_id, f"routing failed {self.request.retries + 1} times: {exc}")
            except DatabaseError:
                logger.exception("ticket %s: could not record the routing failure; the sweeper will", ticket_id)
            return "gave up"
        countdown = backoff_seconds(self.request.retries)
        logger.warning("ticket %s: %s; retrying in %s s", ticket_id, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc
    except Exception as exc:  # a bug or bad data: the ticket must still reach a person
        logger.exception("ticket %s: routing failed", ticket_id)
        routing.give_up_routing(ticket_id, f"routing failed: {type(exc).__name__}: {exc}")
        return "failed"
    return prediction.decision if prediction is not None else "nothing to do"


@shared_task(name="triage.tasks.requeue_stuck_tickets_task")
def requeue_stuck_tickets_task() -> int:
    """Beat: re-queue routing for tickets stuck in ``routing`` or ``new``; returns how many."""
    return len(routing.requeue_stuck_tickets())
