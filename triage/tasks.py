"""Routing tasks: thin wrappers around ``triage.routing``; they take ids and are safe to run twice.

``route_ticket_task`` runs on the ``inference`` queue (``CELERY_TASK_ROUTES``), acknowledged late: a
worker killed mid-task leaves the message to be redelivered, and the claim in ``route_ticket`` makes
the second run harmless. Database hiccups and a model that cannot load yet are retried with
exponential backoff; after the last retry the ticket goes to needs-triage with the error, never lost.
Routing is per-ticket work (``triage.work``): recorded with the ticket, sent after commit, marked done
here. ``sweep_ticket_work_task`` (beat, every ``TRIAGE_SWEEP_SECONDS``) sends what was never sent and
re-sends what is overdue, for every kind of per-ticket work (routing, suggestions, ...).

Micro-batching: the message names one ticket, the task routes a batch. It claims that ticket's job and
up to ``TRIAGE_INFERENCE_BATCH_SIZE`` - 1 more waiting routing jobs (``triage.work.claim_batch``), scores
them in one pass and stores each decision in its own transaction (``routing.route_tickets``). Other
models that want the same batch (tags) receive its ticket ids through ``signals.tickets_routed``. A
batch that hits a bug is routed again one ticket at a time, so the bug costs only its own ticket a
decision.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction

from mlops.inference.encoders import ModelUnavailable

from . import routing
from .models import Prediction
from .signals import routing_finishing, tickets_routed
from .work import (
    batch_options,
    claim_batch,
    claim_token,
    finish_work,
    record_batch,
    register_work,
    release_batch,
    sweep_work,
)

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


def _summary(outcomes: dict[int, Prediction | None]) -> str:
    """One ticket: its decision (or "nothing to do"); a batch: how many of each."""
    said = [p.decision if p is not None else "nothing to do" for p in outcomes.values()]
    if len(said) == 1:
        return said[0]
    return f"{len(said)} tickets: " + ", ".join(f"{n} {what}" for what, n in sorted(Counter(said).items()))


def _route_each_alone(ticket_ids: Sequence[int]) -> dict[int, Prediction | None]:
    """After a batch failed with a bug: each ticket on its own, and only the one that fails again gives up."""
    outcomes: dict[int, Prediction | None] = {}
    for ticket_id in ticket_ids:
        try:
            outcomes.update(routing.route_tickets([ticket_id]))
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            logger.exception("ticket %s: routing failed", ticket_id)
            _give_up(ticket_id, f"routing failed: {type(exc).__name__}: {exc}")
            outcomes[ticket_id] = None
    return outcomes


@shared_task(
    bind=True,
    name="triage.tasks.route_ticket_task",
    acks_late=True,
    max_retries=MAX_RETRIES,
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def route_ticket_task(self, ticket_id: int) -> str:
    """Route ticket ``ticket_id`` and the routing jobs waiting with it; returns the decisions, or why
    nothing was decided ("nothing to do": decided already, or held by another run)."""
    token = claim_token(self.request.id)
    ticket_ids = [ticket_id]  # what a failure to claim gives up on after the last retry
    try:
        ticket_ids = claim_batch(ROUTE, ticket_id, token, **batch_options(ROUTE))
        if not ticket_ids:
            return "nothing to do"
        started = time.monotonic()
        try:
            outcomes = routing.route_tickets(ticket_ids)
            record_batch(ROUTE, len(ticket_ids), time.monotonic() - started)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # a bug or bad data: every ticket must still reach a person
            if len(ticket_ids) == 1:
                logger.exception("ticket %s: routing failed", ticket_id)
                _give_up(ticket_id, f"routing failed: {type(exc).__name__}: {exc}")
                return "failed"
            logger.exception("a batch of %d tickets failed; routing each alone", len(ticket_ids))
            outcomes = _route_each_alone(ticket_ids)
        # Decided now, decided before, or sent to needs-triage by route_tickets: the work is done either
        # way. The work that follows routing (tags) is recorded in the same transaction.
        with transaction.atomic():
            for claimed in ticket_ids:
                finish_work(claimed, ROUTE, claim=token)
            routing_finishing.send(sender=route_ticket_task, ticket_ids=list(ticket_ids), claim=token)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            for claimed in ticket_ids:
                try:
                    _give_up(claimed, f"routing failed {self.request.retries + 1} times: {exc}")
                except DatabaseError:
                    logger.exception("ticket %s: could not record the routing failure; the sweeper will", claimed)
            return "gave up"
        try:  # the retry claims its own ticket again; the others may go to any task meanwhile
            release_batch(ROUTE, ticket_ids, token)
        except DatabaseError:  # the lease runs out by itself
            logger.warning("could not release %d claimed routing jobs", len(ticket_ids))
        countdown = backoff_seconds(self.request.retries)
        logger.warning("tickets %s: %s; retrying in %s s", ticket_ids, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc
    # Tags and the like score the same batch while the models are warm; their failures are logged,
    # never routing's.
    routed = tickets_routed.send_robust(sender=route_ticket_task, ticket_ids=list(ticket_ids), claim=token)
    for receiver, error in routed:
        if isinstance(error, Exception):
            logger.error("tickets %s: %s failed after routing: %r", ticket_ids, receiver, error)
    return _summary(outcomes)


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
