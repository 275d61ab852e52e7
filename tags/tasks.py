"""Tagging as per-ticket work (``triage.work``, kind ``tag``): a routed ticket's tags are never lost.

Tags are scored in the routing batch (``tags.hooks``): the batch's ``tag`` jobs are opened claimed by
the routing task and unsent (``hold_work``) in the transaction that ends its routing
(``triage.signals.routing_finishing``), then scored and marked done (``tickets_routed``).
When scoring fails (the database blinked, no zero-shot scorer could load yet, a bug) the jobs are
given back; the sweeper then sends each like any job never sent, and ``score_tags_task`` claims a batch
of waiting ``tag`` jobs and scores them, with the same guarantees as routing and suggestions (claimed
first, redelivery harmless, given up after ``TRIAGE_WORK_MAX_SENDS`` sends). New tickets get no ``tag``
job of their own (``on_create=False``): routing asks for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, transaction

# The same errors are worth another try as for routing (the database blinked, a model could not load
# yet, memory ran short), with the same backoff.
from triage.tasks import MAX_RETRIES, TRANSIENT_ERRORS, backoff_seconds
from triage.work import (
    batch_options,
    claim_batch,
    claim_token,
    finish_work,
    hold_work,
    record_batch,
    register_work,
    release_batch,
)

logger = logging.getLogger(__name__)

TAG = "tag"


def _release(ticket_ids: Sequence[int], token: str) -> None:
    try:
        release_batch(TAG, ticket_ids, token)
    except DatabaseError:  # the lease runs out by itself
        logger.warning("could not give back %d tag jobs; they are sent when their lease ends", len(ticket_ids))


def _score_and_finish(ticket_ids: Sequence[int], token: str) -> int:
    from triage.models import Ticket

    from .scoring import score_tags
    from .signals import tags_changed

    ids = list(ticket_ids)
    started = time.monotonic()
    stored = score_tags(Ticket.objects.filter(pk__in=ids).order_by("pk"))
    record_batch(TAG, len(ids), time.monotonic() - started)
    for ticket_id in ids:
        finish_work(ticket_id, TAG, claim=token)
    transaction.on_commit(lambda: tags_changed.send_robust(sender=tag_tickets, ticket_ids=ids))
    return sum(len(rows) for rows in stored.values())


def tag_tickets(ticket_ids: Sequence[int], token: str) -> int:
    """Score and store the tags of tickets whose ``tag`` jobs ``token`` holds, and mark the jobs done;
    returns how many predictions they have. On failure the jobs are given back (then sent by the
    sweeper) and the error raised."""
    try:
        return _score_and_finish(ticket_ids, token)
    except BaseException:
        _release(ticket_ids, token)
        raise


def record_tag_jobs(ticket_ids: Sequence[int], claim: str) -> bool:
    """Open the tickets' ``tag`` jobs held by ``claim`` and unsent (routing calls this in the transaction
    that ends its batch); False, and nothing recorded, when no tag set is scorable."""
    from .models import TagSet

    if not TagSet.objects.scorable().exists():
        return False
    hold_work(TAG, ticket_ids, claim)
    return True


def tag_routed_tickets(ticket_ids: Sequence[int], claim: str | None = None) -> int:
    """The routing batch's tags (``tags.hooks``): score the tickets whose ``tag`` jobs ``claim`` holds
    (recorded with the routing's end). Without ``claim`` (a caller other than the routing task) the jobs
    are recorded here first."""
    if claim is None:
        claim = claim_token(None)
        if not record_tag_jobs(ticket_ids, claim):
            return 0
    return tag_tickets(ticket_ids, claim)


def _tag_each_alone(ticket_ids: Sequence[int], token: str) -> int:
    """After a batch failed with a bug: each ticket on its own; one that fails again is given back to the
    sweeper."""
    stored = 0
    for i, ticket_id in enumerate(ticket_ids):
        try:
            stored += tag_tickets([ticket_id], token)
        except TRANSIENT_ERRORS:
            _release(ticket_ids[i + 1 :], token)
            raise
        except Exception:
            logger.exception("ticket %s: tagging failed; the sweeper sends it again", ticket_id)
    return stored


@shared_task(
    bind=True,
    name="tags.tasks.score_tags_task",
    acks_late=True,
    max_retries=MAX_RETRIES,
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def score_tags_task(self, ticket_id: int) -> int:
    """Score the tags of ticket ``ticket_id`` and of the ``tag`` jobs waiting with it (one batch); returns
    how many predictions they have. Sent by the sweeper for tickets whose tagging in the routing batch
    failed."""
    token = claim_token(self.request.id)
    ticket_ids = claim_batch(TAG, ticket_id, token, **batch_options(TAG))
    if not ticket_ids:
        return 0
    try:
        return _score_and_finish(ticket_ids, token)
    except TRANSIENT_ERRORS as exc:
        _release(ticket_ids, token)  # the retry claims its own ticket again; the others may go to any task
        if self.request.retries >= self.max_retries:
            raise  # the sweeper sends them again later, until it gives up
        logger.warning("tickets %s: tagging failed (%s); retrying", ticket_ids, exc)
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
    except Exception:
        if len(ticket_ids) == 1:
            _release(ticket_ids, token)
            raise
        logger.exception("a batch of %d tickets failed tagging; tagging each alone", len(ticket_ids))
        return _tag_each_alone(ticket_ids, token)


register_work(TAG, score_tags_task, on_create=False)
