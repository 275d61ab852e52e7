"""Per-ticket work recorded with the ticket and sent to the broker after commit: a transactional outbox.

Why: a Celery message is not part of the database transaction. Sent before the commit, a worker can
look for a ticket that does not exist yet; sent after it, a broker that is down loses the work (and
used to turn the request into a 500 after the ticket was stored, so clients retried and duplicated it).
So each piece of work is a ``TicketJob`` row written in the ticket's transaction, and the broker is
told afterwards:

* ``request_work(ticket_id, kinds)``: in the caller's transaction, open (or reopen) one job per kind,
  and send them once the transaction commits. A broker error is logged, never raised: the job stays
  unsent and the sweeper sends it when the broker is back.
* ``finish_work(ticket_id, kind)``: the task, once its work is done (decided, gave up, stored).
* ``sweep_work()``: beat, every ``TRIAGE_SWEEP_SECONDS``. Sends jobs never sent; re-sends jobs not done
  by their deadline (``TRIAGE_STUCK_AFTER_SECONDS`` after the first send, doubling with every re-send),
  but never more of them than the broker can have lost: open sent jobs of a queue minus the messages
  waiting in it. A long backlog is waited for, not flooded with copies. A job sent
  ``TRIAGE_WORK_MAX_SENDS`` times and overdue again is given up (routing: the ticket goes to
  needs-triage).

Kinds are registered by the app that owns the task (``register_work`` in its ``tasks.py``), so triage
does not import search. A kind's task takes the ticket id and must be harmless to run twice (it claims
its row first). A later batching task can claim up to N open jobs of one kind with
``select_for_update(skip_locked=True)`` on this table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from .models import TicketJob

logger = logging.getLogger(__name__)

# A job whose own on-commit send may still be on its way is left alone this long.
UNSENT_GRACE = timedelta(seconds=5)
# Jobs handled per kind and sweep: a sweep stays short, the next one takes the rest.
SWEEP_LIMIT = 1000


@dataclass(frozen=True)
class WorkKind:
    name: str
    task: object  # a Celery task taking the ticket id
    on_create: bool
    give_up: Callable[[int, str], object] | None


_KINDS: dict[str, WorkKind] = {}


def register_work(name: str, task, *, on_create: bool = True, give_up: Callable[[int, str], object] | None = None):
    """Make ``task`` (a Celery task taking a ticket id) a kind of per-ticket work called ``name``.

    ``on_create``: every new ticket gets one. ``give_up(ticket_id, reason)`` runs when the sweeper stops
    re-sending it. Called at import of the owning app's ``tasks.py``.
    """
    _KINDS[name] = WorkKind(name, task, on_create, give_up)


def registered_kinds() -> dict[str, WorkKind]:
    """Every registered kind by name (the owning apps import their ``tasks.py`` in ``ready()``)."""
    return dict(_KINDS)


def _kinds(names: Iterable[str] | None) -> list[WorkKind]:
    kinds = registered_kinds()
    if names is None:
        return [kind for kind in kinds.values() if kind.on_create]
    unknown = [name for name in names if name not in kinds]
    if unknown:
        raise ValueError(f"unknown kind of ticket work: {', '.join(unknown)} (known: {', '.join(kinds)})")
    return [kinds[name] for name in names]


def first_deadline() -> timedelta:
    return timedelta(seconds=settings.TRIAGE_STUCK_AFTER_SECONDS)


def deadline_after(sends: int) -> timedelta:
    """How long a job sent ``sends`` times may wait before it is sent again: doubles with each send."""
    return first_deadline() * 2 ** max(sends - 1, 0)


# --- Recording and sending -------------------------------------------------------------------------
def request_work(ticket_id: int, kinds: Iterable[str] | None = None) -> None:
    """Record the ticket's work (``kinds``, default: every kind new tickets get) and send it after commit.

    Call inside the transaction that writes the ticket. An open job of the same kind is reopened, not
    duplicated; a done one is opened again (e.g. refreshing suggestions).

    >>> with transaction.atomic():                         # doctest: +SKIP
    ...     ticket = Ticket.objects.create(...)
    ...     request_work(ticket.pk)                        # routing and suggestions
    """
    names = [kind.name for kind in _kinds(kinds)]
    if not names:
        return
    now = timezone.now()
    TicketJob.objects.bulk_create(
        [TicketJob(ticket_id=ticket_id, kind=name, requested_at=now) for name in names],
        update_conflicts=True,
        unique_fields=["ticket", "kind"],
        update_fields=["requested_at", "sent_at", "due_at", "sends", "done_at", "error"],
    )
    transaction.on_commit(partial(send_work, ticket_id, names), robust=True)


def send_work(ticket_id: int, names: Iterable[str]) -> list[str]:
    """Send the ticket's open jobs of ``names`` now; returns the kinds sent. Never raises for the broker."""
    from config.celery import send_or_defer

    kinds = registered_kinds()
    sent: list[str] = []
    for name in names:
        # An unsent job stays so; the sweeper sends it when the broker answers again.
        if not send_or_defer(kinds[name].task, ticket_id):
            break
        sent.append(name)
    if sent:
        now = timezone.now()
        try:
            TicketJob.objects.filter(ticket_id=ticket_id, kind__in=sent, done_at__isnull=True).update(
                sent_at=now, due_at=now + first_deadline(), sends=F("sends") + 1
            )
        except DatabaseError:  # the message went out; at worst the sweeper sends a harmless copy
            logger.exception("ticket %s: sent %s but could not record it", ticket_id, sent)
    return sent


def finish_work(ticket_id: int, kind: str, *, error: str = "") -> bool:
    """Mark the ticket's open ``kind`` job done (its task calls this). False when none was open."""
    return bool(
        TicketJob.objects.filter(ticket_id=ticket_id, kind=kind, done_at__isnull=True).update(
            done_at=timezone.now(), error=error[:2000]
        )
    )


# --- The sweeper -----------------------------------------------------------------------------------
def queue_of(kind: WorkKind) -> str:
    """The broker queue the kind's task is routed to (``CELERY_TASK_ROUTES``)."""
    from config.celery import app

    route = app.amqp.router.route({}, kind.task.name, args=(0,), kwargs={})
    queue = route.get("queue")
    return getattr(queue, "name", None) or str(queue or settings.CELERY_TASK_DEFAULT_QUEUE)


def queue_length(queue: str) -> int:
    """Messages waiting in ``queue`` (not those reserved by a worker or scheduled for later)."""
    from kombu.exceptions import ChannelError

    from config.celery import app

    with app.connection_for_read() as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:  # Redis drops the key of an empty queue
            return 0


@dataclass
class SweepReport:
    sent: int = 0  # never sent before
    resent: int = 0  # overdue
    held: int = 0  # overdue, but their queue still holds enough messages to be theirs
    gave_up: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _send_locked(kind: WorkKind, ids: list[int], now: datetime) -> int:
    """Send the jobs ``ids`` of one kind, locking them so two sweeps never both send; returns how many."""
    from config.celery import send_or_defer

    sent = 0
    with transaction.atomic():
        jobs = list(
            TicketJob.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, done_at__isnull=True)
            .only("pk", "ticket_id", "sends")
        )
        for job in jobs:
            if not send_or_defer(kind.task, job.ticket_id, skip_when_down=False):
                break
            job.sends += 1
            job.sent_at = now
            job.due_at = now + deadline_after(job.sends)
            job.save(update_fields=["sends", "sent_at", "due_at"])
            sent += 1
    return sent


def _give_up(kind: WorkKind, job: TicketJob) -> None:
    reason = f"gave up after {job.sends} sends of its {kind.name} work (no worker finished it)"
    if kind.give_up is not None:
        kind.give_up(job.ticket_id, reason)
    finish_work(job.ticket_id, kind.name, error=reason)
    logger.warning("ticket %s: %s", job.ticket_id, reason)


def sweep_work(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> SweepReport:
    """Send per-ticket work that was never sent or is overdue; give up on work sent too often.

    See the module docstring for the rules. Returns what it did.
    """
    now = now or timezone.now()
    report = SweepReport()
    max_sends = settings.TRIAGE_WORK_MAX_SENDS
    open_jobs = TicketJob.objects.filter(done_at__isnull=True)
    # Open sent jobs per queue, to compare with what the queue holds.
    kinds = registered_kinds()
    queues = {name: queue_of(kind) for name, kind in kinds.items()}
    lost: dict[str, int] = {}
    for queue in set(queues.values()):
        outstanding = open_jobs.filter(
            kind__in=[n for n, q in queues.items() if q == queue], sent_at__isnull=False
        ).count()
        lost[queue] = max(outstanding - queue_length(queue), 0) if outstanding else 0

    for name, kind in kinds.items():
        jobs = open_jobs.filter(kind=name)
        for job in jobs.filter(sent_at__isnull=False, sends__gte=max_sends, due_at__lte=now)[:limit]:
            _give_up(kind, job)
            report.gave_up += 1
        unsent = list(
            jobs.filter(sent_at__isnull=True, requested_at__lte=now - UNSENT_GRACE)
            .order_by("requested_at")
            .values_list("pk", flat=True)[:limit]
        )
        report.sent += _send_locked(kind, unsent, now)
        overdue = list(
            jobs.filter(sent_at__isnull=False, sends__lt=max_sends, due_at__lte=now)
            .order_by("due_at")
            .values_list("pk", flat=True)[:limit]
        )
        allowed = min(len(overdue), lost[queues[name]])
        report.held += len(overdue) - allowed
        resent = _send_locked(kind, overdue[:allowed], now)
        lost[queues[name]] -= resent
        report.resent += resent
    if report.sent or report.resent or report.gave_up or report.held:
        logger.info("ticket work sweep: %s", report.as_dict())
    return report
