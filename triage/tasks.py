"""Routing tasks: thin wrappers around ``triage.routing``; they take ids and are safe to run twice.

``route_ticket_task`` runs on the ``inference`` queue (``CELERY_TASK_ROUTES``), acknowledged late: a
worker killed mid-task leaves the message to be redelivered, and the claim in ``route_ticket`` makes
the second run harmless. Database hiccups and a model that cannot load yet are retried with
exponential backoff; after the last retry the ticket goes to needs-triage with the error, never lost.
Routing is per-ticket work (``triage.work``): recorded with the ticket, sent after commit, marked done
here. ``sweep_ticket_work_task`` (beat, every ``TRIAGE_SWEEP_SECONDS``) sends what was never sent and
re-sends what is overdue, for every kind of per-ticket work (routing, suggestions, ...).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from mlops.inference.encoders import ModelUnavailable

from . import routing
from .signals import tickets_routed
from .work import finish_work, register_work, sweep_work

logger = logging.getLogger(__name__)

# Errors worth another try: the database or the broker blinked, a model file was not there yet.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ModelUnavailable, MemoryError)
MAX_RETRIES = 4
BACKOFF_BASE_SECONDS = 5
ROUTE = "route"


def backoff_seconds(retries: int) -> int:
    """5, 10, 20, 40 ... seconds, capped (a retry waits in a worker, within the visibility timeout)."""
    return min(BACKOFF_BASE_SECONDS * 2**retries, settings.TRIAGE_TASK_MAX_COUNTDOWN_SECONDS)


def _give_up(ticket_id: int, error: str) -> None:
    routing.give_up_routing(ticket_id, error)
    finish_work(ticket_id, ROUTE, error=error)


@shared_task(
    bind=True,
    name="triage.tasks.route_ticket_task",
    acks_late=True,
    max_retries=MAX_RETRIES,
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def route_ticket_task(self, ticket_id: int) -> str:
    """Route ticket ``ticket_id``; returns the decision, or why nothing was decided."""
    try:
        prediction = routing.route_ticket(ticket_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            try:
                _give_up(ticket_id, f"routing failed {self.request.retries + 1} times: {exc}")
            except DatabaseError:
                logger.exception("ticket %s: could not record the routing failure; the sweeper will", ticket_id)
            return "gave up"
        countdown = backoff_seconds(self.request.retries)
        logger.warning("ticket %s: %s; retrying in %s s", ticket_id, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc
    except Exception as exc:  # a bug or bad data: the ticket must still reach a person
        logger.exception("ticket %s: routing failed", ticket_id)
        _give_up(ticket_id, f"routing failed: {type(exc).__name__}: {exc}")
        return "failed"
    # Decided now, decided before, or sent to needs-triage by route_ticket: the work is done either way.
    finish_work(ticket_id, ROUTE)
    # Tags and the like are scored in the same batch; their failures are logged, never routing's.
    for receiver, error in tickets_routed.send_robust(sender=route_ticket_task, ticket_ids=[ticket_id]):
        if isinstance(error, Exception):
            logger.error("ticket %s: %s failed after routing: %r", ticket_id, receiver, error)
    return prediction.decision if prediction is not None else "nothing to do"


register_work(ROUTE, route_ticket_task, give_up=routing.give_up_routing)


@shared_task(name="triage.tasks.sweep_ticket_work_task")
def sweep_ticket_work_task() -> dict[str, int]:
    """Beat: send per-ticket work never sent, re-send overdue work, give up on work sent too often."""
    return sweep_work().as_dict()


@shared_task(
    bind=True,
    name="triage.tasks.start_zero_shot_version_task",
    acks_late=True,
    max_retries=MAX_RETRIES,
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def start_zero_shot_version_task(self) -> str:
    """Create (and promote, over a zero-shot champion) the zero-shot version of today's teams.

    Queued when an admin changes a team's description or examples; running it twice finds the
    version there. Routing would create it on the next ticket anyway; this makes it visible at once.
    """
    from mlops.registry import serving_version

    try:
        return serving_version(routing.team_classes(routing.routable_teams())).version.version
    except TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
