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
from collections.abc import Sequence

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, transaction

from triage.work import MAX_RETRIES, claim_token, finish_batch, hold_work, register_work, release_batch, run_batch

logger = logging.getLogger(__name__)

TAG = "tag"


def _score(ticket_ids: Sequence[int]) -> dict:
    """Score and store the tickets' tags; their predictions by ticket id."""
    from triage.models import Ticket

    from .scoring import score_tags

    return score_tags(Ticket.objects.filter(pk__in=list(ticket_ids)).order_by("pk"))


def _tagged(ticket_ids: list[int], claim: str) -> None:
    """In the transaction that marks the tag jobs done: tell the listeners (webhooks) once it commits."""
    from .signals import tags_changed

    transaction.on_commit(lambda: tags_changed.send_robust(sender=tag_tickets, ticket_ids=list(ticket_ids)))


def tag_tickets(ticket_ids: Sequence[int], token: str) -> int:
    """Score and store the tags of tickets whose ``tag`` jobs ``token`` holds, and mark the jobs done;
    returns how many predictions they have. On failure the jobs are given back (then sent by the
    sweeper) and the error raised."""
    ids = list(ticket_ids)
    try:
        stored = _score(ids)
        finish_batch(TAG, ids, token, _tagged)
    except BaseException:
        try:
            release_batch(TAG, ids, token)
        except DatabaseError:  # the lease runs out by itself
            logger.warning("could not give back %d tag jobs; they are sent when their lease ends", len(ids))
        raise
    return sum(len(rows) for rows in stored.values())


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


@shared_task(
    bind=True,
    name="tags.tasks.score_tags_task",
    acks_late=True,
    max_retries=MAX_RETRIES,
    time_limit=settings.TRIAGE_INFERENCE_TIME_LIMIT,
)
def score_tags_task(self, ticket_id: int) -> int:
    """Score the tags of ticket ``ticket_id`` and of the ``tag`` jobs waiting with it (one batch,
    ``triage.work.run_batch``); returns how many predictions they have. Sent by the sweeper for tickets
    whose tagging in the routing batch failed."""
    run = run_batch(self, TAG, ticket_id, _score, finishing=_tagged)
    return sum(len(rows) for rows in run.outcomes.values())


register_work(TAG, score_tags_task, on_create=False, label="tagging")
