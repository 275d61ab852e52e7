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
from collections import Counter

from celery import shared_task
from django.conf import settings

from . import routing
from .signals import routing_finishing, tickets_routed
from .work import (  # noqa: F401  (TRANSIENT_ERRORS, MAX_RETRIES, backoff_seconds: the routing task's rules, re-exported)
    MAX_RETRIES,
    TRANSIENT_ERRORS,
    backoff_seconds,
    register_work,
    run_batch,
    sweep_work,
)

logger = logging.getLogger(__name__)

ROUTE = "route"


def _summary(run) -> str:
    """One ticket: its decision (or "nothing to do", "failed", "gave up"); a batch: how many of each."""
    if run.gave_up:
        return "gave up"
    said = [p.decision if p is not None else "nothing to do" for p in run.outcomes.values()]
    said += ["failed"] * len(run.failed)
    if len(said) <= 1:
        return said[0] if said else "nothing to do"
    return f"{len(said)} tickets: " + ", ".join(f"{n} {what}" for what, n in sorted(Counter(said).items()))


def _routing_finishing(ticket_ids: list[int], claim: str) -> None:
    # The work that follows routing (tags) is recorded in the transaction that ends the batch.
    routing_finishing.send(sender=route_ticket_task, ticket_ids=ticket_ids, claim=claim)


@shared_task(
    bind=True,
    name="triage.tasks.route_ticket_task",
    acks_late=True,
    max_retries=MAX_RETRIES,
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def route_ticket_task(self, ticket_id: int) -> str:
    """Route ticket ``ticket_id`` and the routing jobs waiting with it (``triage.work.run_batch``);
    returns the decisions, or why nothing was decided ("nothing to do": decided already, or held by
    another run; "failed": a bug, the ticket went to needs-triage; "gave up": after the last retry)."""
    run = run_batch(self, ROUTE, ticket_id, routing.route_tickets, finishing=_routing_finishing)
    if not run.gave_up and (run.outcomes or run.failed):
        # Tags and the like score the same batch while the models are warm; their failures are logged,
        # never routing's.
        done = list(run.ticket_ids)
        routed = tickets_routed.send_robust(sender=route_ticket_task, ticket_ids=done, claim=run.claim)
        for receiver, error in routed:
            if isinstance(error, Exception):
                logger.error("tickets %s: %s failed after routing: %r", done, receiver, error)
    return _summary(run)


register_work(ROUTE, route_ticket_task, give_up=routing.give_up_routing, label="routing")


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
