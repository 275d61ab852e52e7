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
* ``hold_work(kind, ticket_ids, token)``: work done right away, in a batch another kind's task already
  holds (tags, scored in the routing batch): opened claimed and unsent; marked done by the holder, or
  given back on failure (``release_batch``) and then sent by the sweeper like any job never sent.
* ``sweep_work()``: beat, every ``TRIAGE_SWEEP_SECONDS``. Sends jobs never sent; re-sends jobs not done
  by their deadline (``TRIAGE_STUCK_AFTER_SECONDS`` after the first send, doubling with every re-send),
  but never more of them than the broker can have lost: open sent jobs of a queue minus the messages
  waiting in it. A long backlog is waited for, not flooded with copies. A job sent
  ``TRIAGE_WORK_MAX_SENDS`` times and overdue again is given up (routing: the ticket goes to
  needs-triage).

Kinds are registered by the app that owns the task (``register_work`` in its ``tasks.py``), so triage
does not import search. A kind's task takes the ticket id and must be harmless to run twice (it claims
its row first).

Micro-batching: a message is a ticket's, but its task scores a batch. ``claim_batch(kind, ticket_id,
token)`` claims the ticket's open job and up to ``TRIAGE_INFERENCE_BATCH_SIZE`` - 1 more waiting jobs of
the kind, oldest first (``select_for_update(skip_locked=True)``: two tasks never claim the same job),
waiting up to ``TRIAGE_INFERENCE_BATCH_WAIT_MS`` for more when the batch is not full. A claim is a
lease: the job is the claimer's (``claim`` = its token, the Celery task id) until ``claimed_until``
(``TRIAGE_WORK_LEASE_SECONDS``). Then:

* the task stores each ticket's result in its own transaction and ``finish_work(..., claim=token)``;
* a message whose ticket another live run holds claims other waiting jobs instead, or returns: the
  holder finishes it;
* a redelivered message (the same task id: its worker died) takes back what its earlier run claimed;
* a run that died for good leaves its jobs leased; once the lease is over the sweeper treats them as
  any overdue job and re-sends them, and whichever task gets one claims it again;
* asking for the work again (``request_work``) drops the claim: the older run's ``finish_work`` then
  matches nothing and the new request is computed afresh.

``run_batch`` is the body of every kind's task (routing, suggestions, tags): claim, score, finish,
retry transient errors with backoff, run a batch that hit a bug one ticket at a time, give up or leave
to the sweeper. The rules live there once; a task names its kind and what to compute.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from mlops.inference.encoders import ModelUnavailable

from .models import TicketJob

logger = logging.getLogger(__name__)

# A job whose own on-commit send may still be on its way is left alone this long.
UNSENT_GRACE = timedelta(seconds=5)
# Jobs handled per kind and sweep: a sweep stays short, the next one takes the rest.
SWEEP_LIMIT = 1000
# How often a task waiting to fill its batch looks for more jobs.
BATCH_POLL = timedelta(milliseconds=10)
# Errors worth another try: the database or the broker blinked, a model file was not there yet, memory
# ran short. Anything else is a bug or bad data.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ModelUnavailable, MemoryError)
MAX_RETRIES = 4
BACKOFF_BASE_SECONDS = 5


@dataclass(frozen=True)
class WorkKind:
    name: str
    task: object  # a Celery task taking the ticket id
    on_create: bool
    give_up: Callable[[int, str], object] | None
    label: str  # what people read in errors and logs ("routing failed 5 times")


_KINDS: dict[str, WorkKind] = {}


def register_work(
    name: str,
    task,
    *,
    on_create: bool = True,
    give_up: Callable[[int, str], object] | None = None,
    label: str | None = None,
):
    """Make ``task`` (a Celery task taking a ticket id) a kind of per-ticket work called ``name``.

    ``on_create``: every new ticket gets one. ``give_up(ticket_id, reason)`` runs when the work is given
    up (the sweeper stops re-sending it, or ``run_batch`` stops retrying). ``label``: the work's name in
    errors people read (default ``name``). Called at import of the owning app's ``tasks.py``.
    """
    _KINDS[name] = WorkKind(name, task, on_create, give_up, label or name)


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
        update_fields=["requested_at", "sent_at", "due_at", "sends", "done_at", "error", "claim", "claimed_until"],
    )
    transaction.on_commit(partial(send_work, ticket_id, names), robust=True)


def hold_work(kind: str, ticket_ids: Iterable[int], token: str) -> None:
    """Open (or reopen) the tickets' ``kind`` jobs claimed by ``token`` and not sent: the caller does the
    work now, then ``finish_work(..., claim=token)`` each, or ``release_batch`` on failure. A job given back,
    or left when the caller died (once the lease is over), is sent by the sweeper as one never sent.

    >>> hold_work("tag", [12, 13], token)                 # doctest: +SKIP
    """
    ids = list(dict.fromkeys(ticket_ids))
    if not ids:
        return
    _kinds([kind])  # an unknown kind is refused before anything is written
    now = timezone.now()
    lease = now + timedelta(seconds=settings.TRIAGE_WORK_LEASE_SECONDS)
    TicketJob.objects.bulk_create(
        [TicketJob(ticket_id=pk, kind=kind, requested_at=now, claim=token, claimed_until=lease) for pk in ids],
        update_conflicts=True,
        unique_fields=["ticket", "kind"],
        update_fields=["requested_at", "sent_at", "due_at", "sends", "done_at", "error", "claim", "claimed_until"],
    )


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


def finish_work(ticket_id: int, kind: str, *, error: str = "", claim: str | None = None) -> bool:
    """Mark the ticket's open ``kind`` job done (its task calls this). False when none was open.

    With ``claim``, only while the job is still that claim's: a job asked for again meanwhile (its
    claim dropped by ``request_work``) stays open for the newer request.
    """
    jobs = TicketJob.objects.filter(ticket_id=ticket_id, kind=kind, done_at__isnull=True)
    if claim is not None:
        jobs = jobs.filter(claim=claim)
    return bool(jobs.update(done_at=timezone.now(), error=error[:2000], claim="", claimed_until=None))


def finish_batch(
    kind: str, ticket_ids: list[int], claim: str, finishing: Callable[[list[int], str], object] | None = None
) -> None:
    """Mark the jobs ``claim`` holds done, in one transaction with ``finishing(ticket_ids, claim)`` (what
    must follow them is recorded with them, or neither is)."""
    with transaction.atomic():
        for ticket_id in ticket_ids:
            finish_work(ticket_id, kind, claim=claim)
        if finishing is not None and ticket_ids:
            finishing(ticket_ids, claim)


# --- Claiming batches ------------------------------------------------------------------------------
def claim_token(task_id: str | None) -> str:
    """The claim of a task run: its Celery id, which a redelivered message keeps (eager runs get one)."""
    return task_id or uuid.uuid4().hex


def _claimable(token: str, now: datetime) -> Q:
    return Q(done_at__isnull=True) & (Q(claimed_until__isnull=True) | Q(claimed_until__lte=now) | Q(claim=token))


def _claim(kind: str, ticket_id: int | None, token: str, limit: int, taken: list[int]) -> list[int]:
    """One claiming transaction: ``ticket_id``'s job (when given and free) first, then the oldest free ones."""
    now = timezone.now()
    claimed: list[int] = []
    pks: list[int] = []
    with transaction.atomic():
        free = TicketJob.objects.select_for_update(skip_locked=True).filter(_claimable(token, now), kind=kind)
        if ticket_id is not None:
            own = list(free.filter(ticket_id=ticket_id).values_list("pk", flat=True))
            if own:
                pks += own
                claimed.append(ticket_id)
            elif not TicketJob.objects.filter(ticket_id=ticket_id, kind=kind).exists():
                # Work sent without a job row (a direct call): computed as before the outbox existed.
                claimed.append(ticket_id)
        if len(claimed) < limit:
            others = (
                free.exclude(ticket_id__in=[*taken, *claimed])
                .order_by("requested_at", "pk")
                .values_list("pk", "ticket_id")[: limit - len(claimed)]
            )
            for pk, other in others:
                pks.append(pk)
                claimed.append(other)
        if pks:
            lease = timedelta(seconds=settings.TRIAGE_WORK_LEASE_SECONDS)
            TicketJob.objects.filter(pk__in=pks).update(claim=token, claimed_until=now + lease)
    return claimed


def batch_options(kind: str) -> dict:
    """``claim_batch``'s limit and wait: the batch size (by device unless set), lowered so that a batch of
    ``kind`` ends well inside the task's time limit (``mlops.inference.batching.BatchPacer``), and the wait."""
    from mlops.inference.batching import batch_pacer, inference_batch_size

    limit = batch_pacer().limit(kind, inference_batch_size())
    return {"limit": limit, "wait_seconds": settings.TRIAGE_INFERENCE_BATCH_WAIT_MS / 1000}


def record_batch(kind: str, tickets: int, seconds: float) -> None:
    """What a batch cost, for the size of the next one (``batch_options``)."""
    from mlops.inference.batching import batch_pacer

    batch_pacer().record(kind, tickets=tickets, seconds=seconds)


def claim_batch(kind: str, ticket_id: int, token: str, *, limit: int, wait_seconds: float = 0.0) -> list[int]:
    """Claim ``ticket_id``'s open ``kind`` job and up to ``limit`` - 1 more waiting ones; their ticket ids.

    ``ticket_id`` comes first when it was claimed (it is left out when done, or held by another live
    claim). A batch not full waits up to ``wait_seconds`` for more jobs to arrive, but only once it has
    one: an empty claim returns at once.

    >>> claim_batch("route", 12, "task-id", limit=32, wait_seconds=0.02)  # doctest: +SKIP
    [12, 13, 14]
    """
    if limit < 1:
        raise ValueError(f"a batch holds at least one ticket, not {limit}")
    claimed = _claim(kind, ticket_id, token, limit, [])
    deadline = time.monotonic() + wait_seconds
    while claimed and len(claimed) < limit and time.monotonic() < deadline:
        time.sleep(min(BATCH_POLL.total_seconds(), max(deadline - time.monotonic(), 0.0)))
        claimed += _claim(kind, None, token, limit - len(claimed), claimed)
    return claimed


def release_batch(kind: str, ticket_ids: Iterable[int], token: str) -> int:
    """Give back the claim ``token`` holds on these open jobs (before a retry): other tasks may take them."""
    return TicketJob.objects.filter(
        kind=kind, ticket_id__in=list(ticket_ids), claim=token, done_at__isnull=True
    ).update(claim="", claimed_until=None)


# --- Running a batch -------------------------------------------------------------------------------
def backoff_seconds(retries: int) -> int:
    """5, 10, 20, 40 ... seconds, capped (a retry waits in a worker, within the visibility timeout)."""
    return min(BACKOFF_BASE_SECONDS * 2**retries, settings.TRIAGE_TASK_MAX_COUNTDOWN_SECONDS)


@dataclass
class BatchRun:
    """What ``run_batch`` did: the tickets it claimed, each one's result, and the ones a bug failed."""

    claim: str = ""  # the run's claim token (its Celery task id)
    ticket_ids: list[int] = field(default_factory=list)
    outcomes: dict = field(default_factory=dict)  # ticket id -> what ``process`` returned for it
    failed: list[int] = field(default_factory=list)  # a bug: given up, or given back to the sweeper
    gave_up: bool = False  # transient failures outlasted the retries; every claimed ticket was given up


def give_up_work(kind: WorkKind, ticket_id: int, reason: str) -> None:
    """Stop trying: the kind's ``give_up`` (routing: the ticket goes to needs-triage), the job done with
    ``reason`` as its error. The sweeper and ``run_batch`` both end work this way."""
    if kind.give_up is not None:
        kind.give_up(ticket_id, reason)
    finish_work(ticket_id, kind.name, error=reason)


def _fail_alone(kind: WorkKind, ticket_id: int, token: str, reason: str) -> None:
    """A bug cost this ticket its work. A kind that hands its ticket to a person (routing) gives up now;
    any other gives the job back, and the sweeper sends it again until it gives up."""
    if kind.give_up is not None:
        give_up_work(kind, ticket_id, reason)
    else:
        release_batch(kind.name, [ticket_id], token)


def _each_alone(kind: WorkKind, ticket_ids: list[int], token: str, process, run: BatchRun) -> None:
    """After a batch failed with a bug: each ticket on its own, so the bug costs only its own ticket."""
    for ticket_id in ticket_ids:
        try:
            run.outcomes.update(process([ticket_id]))
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            logger.exception("ticket %s: %s failed", ticket_id, kind.label)
            _fail_alone(kind, ticket_id, token, f"{kind.label} failed: {type(exc).__name__}: {exc}")
            run.failed.append(ticket_id)


def run_batch(
    task,
    kind: str,
    ticket_id: int,
    process: Callable[[list[int]], dict],
    *,
    finishing: Callable[[list[int], str], object] | None = None,
) -> BatchRun:
    """The body of every per-ticket inference task (routing, suggestions, tags): one place for the rules.

    ``task`` is the bound Celery task (``acks_late``, ``max_retries``) whose message names ``ticket_id``.
    It claims that ticket's ``kind`` job and the waiting ones (``claim_batch``), calls
    ``process(ticket_ids)`` (which stores each ticket's result in its own transaction and returns a dict
    by ticket id), then marks the jobs done in one transaction, in which ``finishing(ticket_ids, claim)``
    records what must follow (routing: the tag jobs). Then:

    * a transient error (``TRANSIENT_ERRORS``) gives the claims back and retries with backoff; after the
      last retry a kind with ``give_up`` gives every ticket up (routing: needs-triage, never lost), any
      other leaves them to the sweeper;
    * a bug in a batch of several tickets runs them again one at a time; the ticket that fails alone is
      given up (kinds with ``give_up``) or given back to the sweeper.

    Redelivery is harmless: a redelivered message has its task id, hence its claim, and ``process`` must
    skip what is done already.
    """
    work = registered_kinds()[kind]
    token = claim_token(task.request.id)
    run = BatchRun(claim=token, ticket_ids=[ticket_id])  # what a failure to claim gives up on after the last retry
    try:
        run.ticket_ids = claim_batch(kind, ticket_id, token, **batch_options(kind))
        if not run.ticket_ids:
            return run
        started = time.monotonic()
        try:
            run.outcomes = dict(process(run.ticket_ids))
            record_batch(kind, len(run.ticket_ids), time.monotonic() - started)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # a bug or bad data: each ticket must still get its work, or a person
            if len(run.ticket_ids) == 1:
                logger.exception("ticket %s: %s failed", ticket_id, work.label)
                _fail_alone(work, ticket_id, token, f"{work.label} failed: {type(exc).__name__}: {exc}")
                run.failed.append(ticket_id)
            else:
                logger.exception("a batch of %d tickets failed %s; each alone", len(run.ticket_ids), work.label)
                _each_alone(work, run.ticket_ids, token, process, run)
        finished = [pk for pk in run.ticket_ids if pk not in run.failed or work.give_up is not None]
        finish_batch(kind, finished, token, finishing)
    except TRANSIENT_ERRORS as exc:
        last = task.request.retries >= task.max_retries
        if last and work.give_up is not None:
            for pk in run.ticket_ids:
                try:
                    give_up_work(work, pk, f"{work.label} failed {task.request.retries + 1} times: {exc}")
                except DatabaseError:
                    logger.exception("ticket %s: could not record the %s failure; the sweeper will", pk, work.label)
            run.gave_up = True
            return run
        try:  # the retry claims its own ticket again; the others may go to any task meanwhile
            release_batch(kind, run.ticket_ids, token)
        except DatabaseError:  # the lease runs out by itself
            logger.warning("could not give back %d claimed %s jobs", len(run.ticket_ids), kind)
        if last:
            raise  # the sweeper sends them again later, until it gives up
        countdown = backoff_seconds(task.request.retries)
        logger.warning("tickets %s: %s failed (%s); retrying in %s s", run.ticket_ids, work.label, exc, countdown)
        raise task.retry(exc=exc, countdown=countdown) from exc
    return run


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
    give_up_work(kind, job.ticket_id, reason)
    logger.warning("ticket %s: %s", job.ticket_id, reason)


def sweep_work(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> SweepReport:
    """Send per-ticket work that was never sent or is overdue; give up on work sent too often.

    See the module docstring for the rules. Returns what it did.
    """
    now = now or timezone.now()
    report = SweepReport()
    max_sends = settings.TRIAGE_WORK_MAX_SENDS
    open_jobs = TicketJob.objects.filter(done_at__isnull=True)
    # A job a live run holds is neither sent nor given up; once its lease is over (the run died) it is
    # overdue like any other.
    unleased = Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)
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
        jobs = open_jobs.filter(unleased, kind=name)
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
