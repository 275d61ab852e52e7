"""Routing a ticket: score it against the teams, decide, store the decision, move the ticket on.

``route_ticket(ticket_id)`` is what the ``route_ticket_task`` worker runs. It claims the ticket with a
conditional UPDATE (``new``/``routing`` → ``routing``, attempts + 1), scores it with the version that
serves now (``mlops.registry.serving_version``), calibrates, decides, and stores one ``Prediction`` per
(ticket, model version) in the same transaction as the ticket's new status. A re-run (a redelivered
message, the sweeper) finds the ticket decided and does nothing; a run after a crash claims it again.

The decision (``decide``), from the calibrated scores:

* the top team is in mode ``auto`` and its score is at or above the team's threshold → ``auto_routed``:
  the ticket goes to that team (status ``routed``);
* otherwise, if the top team leads the second by at least ``TRIAGE_SUGGEST_MARGIN`` → ``suggested``:
  agents see the suggestion, the ticket waits in ``needs_triage`` for a person;
* otherwise → ``abstained``: ``needs_triage`` with no team shown as chosen. A guess is never shown as
  a decision.

Teams in mode ``off`` are not scored at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import Prediction, Team, Ticket
from .signals import ticket_decided

logger = logging.getLogger(__name__)


# --- Classes and decisions ------------------------------------------------------------------------
def routable_teams() -> list[Team]:
    """Active teams not switched off, in a stable order (by slug)."""
    return list(Team.objects.filter(active=True).exclude(mode=Team.Mode.OFF).order_by("slug"))


def team_classes(teams: Sequence[Team]):
    """The scorers' view of the teams."""
    from mlops.inference.scorers import ClassSpec

    return [
        ClassSpec(
            slug=t.slug,
            name=t.name,
            description=t.description or "",
            hypothesis=t.hypothesis or "",
            examples=tuple(e for e in (t.examples or []) if isinstance(e, str) and e.strip()),
        )
        for t in teams
    ]


@dataclass(frozen=True)
class Decision:
    decision: str
    team: Team | None  # the team routed to or suggested; None when abstaining
    confidence: float
    threshold: float
    top_slug: str


def decide(scores: dict[str, float], teams: dict[str, Team], *, margin: float | None = None) -> Decision:
    """The decision for calibrated ``scores`` (team slug → probability) under the teams' modes and thresholds.

    >>> decide({"billing": 0.95, "orders": 0.05}, {"billing": billing, "orders": orders}).decision  # doctest: +SKIP
    'auto_routed'
    """
    if not scores:
        raise ValueError("no scores to decide from")
    margin = settings.TRIAGE_SUGGEST_MARGIN if margin is None else margin
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    top_slug, top = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    team = teams[top_slug]
    threshold = float(team.threshold)
    if team.mode == Team.Mode.AUTO and top >= threshold:
        return Decision(Prediction.Decision.AUTO_ROUTED, team, top, threshold, top_slug)
    if top - second >= margin:
        return Decision(Prediction.Decision.SUGGESTED, team, top, threshold, top_slug)
    return Decision(Prediction.Decision.ABSTAINED, None, top, threshold, top_slug)


def warm_routing() -> None:
    """Worker start (``mlops.inference.warm.WARMERS``): load the routing scorer and record it with the
    version of today's teams, the label routing itself will use (``<scorer>-<hash>-t<teams hash>``)."""
    from mlops.registry import warm_routing_scorer

    try:
        classes = team_classes(routable_teams())
    except Exception:  # the database may be migrating while a worker starts; routing reports later
        logger.exception("could not read the teams while warming the routing scorer")
        return
    warm_routing_scorer(classes)


# --- Claims and giving up -------------------------------------------------------------------------
class RoutingGaveUp(Exception):
    """The ticket went to needs-triage without a decision (no teams, too many attempts, bad input)."""


def claim_ticket(ticket_id: int) -> Ticket | None:
    """Move the ticket to ``routing`` if it is ``new`` or ``routing``; None when there is nothing to do."""
    now = timezone.now()
    claimed = Ticket.objects.filter(pk=ticket_id, status__in=[Ticket.Status.NEW, Ticket.Status.ROUTING]).update(
        status=Ticket.Status.ROUTING, routing_attempts=F("routing_attempts") + 1, routing_started_at=now
    )
    if claimed != 1:
        return None
    return Ticket.objects.get(pk=ticket_id)


def give_up_routing(ticket_id: int, error: str) -> bool:
    """Send an undecided ticket to needs-triage with ``error``; never lost, never half-decided."""
    moved = Ticket.objects.filter(pk=ticket_id, status__in=[Ticket.Status.NEW, Ticket.Status.ROUTING]).update(
        status=Ticket.Status.NEEDS_TRIAGE, routing_error=error[:2000], updated_at=timezone.now()
    )
    if moved:
        logger.warning("ticket %s goes to needs-triage undecided: %s", ticket_id, error)
    return bool(moved)


def _test_delay(tickets: Sequence[Ticket]) -> None:
    """Tests make routing slow so that they can kill a worker mid-task; honoured only when TRIAGE_ENV=test.

    ``TRIAGE_TEST_ROUTING_DELAY`` seconds, once per batch, when a ticket of it is on one of its first
    ``TRIAGE_TEST_ROUTING_DELAY_ATTEMPTS`` (default 1) attempts: a redelivered attempt runs at normal speed.
    """
    if settings.TRIAGE_ENV != "test":
        return
    delay = settings.TRIAGE_TEST_ROUTING_DELAY
    attempts = settings.TRIAGE_TEST_ROUTING_DELAY_ATTEMPTS
    if delay > 0 and any(ticket.routing_attempts <= attempts for ticket in tickets):
        logger.info("tickets %s: test delay of %s s", [t.pk for t in tickets], delay)
        time.sleep(delay)


# --- Routing tickets ------------------------------------------------------------------------------
def route_ticket(ticket_id: int) -> Prediction | None:
    """Claim, score, decide and store the routing of one ticket. Idempotent.

    Returns the stored (or already stored) prediction; None when the ticket was already decided,
    deleted, or sent to needs-triage without a decision. Database and model-loading errors propagate
    for the task to retry.
    """
    return route_tickets([ticket_id])[ticket_id]


def route_tickets(ticket_ids: Sequence[int]) -> dict[int, Prediction | None]:
    """``route_ticket`` for many tickets with one model pass: each ticket is claimed, then all of them are
    scored together (the scorers batch them by length), and each decision is stored in its own
    transaction, so a failure after the scoring costs no other ticket its decision.

    The decisions are the ones ``route_ticket`` makes for each ticket alone. Returns, per id, what
    ``route_ticket`` would.
    """
    from mlops.calibration import apply_calibration, softmax
    from mlops.inference.scorers import InvalidInput, validate_texts
    from mlops.registry import serving_version

    outcomes: dict[int, Prediction | None] = dict.fromkeys(ticket_ids)
    tickets: list[Ticket] = []
    for ticket_id in ticket_ids:
        ticket = claim_ticket(ticket_id)
        if ticket is None:
            continue
        if ticket.routing_attempts > settings.TRIAGE_MAX_ROUTING_ATTEMPTS:
            give_up_routing(ticket_id, f"gave up after {ticket.routing_attempts - 1} routing attempts")
            continue
        try:
            validate_texts([ticket.text])
        except InvalidInput as exc:  # this ticket alone; the rest of the batch is scored
            give_up_routing(ticket_id, f"cannot route this ticket: {exc}")
            continue
        tickets.append(ticket)
    if not tickets:
        return outcomes
    teams = routable_teams()
    if not teams:
        for ticket in tickets:
            give_up_routing(ticket.pk, "no active team to route to")
        return outcomes
    classes = team_classes(teams)
    serving = serving_version(classes)
    if serving.fallback_reason:  # said once per process as a warning (mlops.registry); here per batch
        logger.info("%d tickets: %s; routing with %s", len(tickets), serving.fallback_reason, serving.scorer.name)
    _test_delay(tickets)
    started = time.perf_counter()
    try:
        logits = serving.scorer.logits([ticket.text for ticket in tickets], classes)
    except InvalidInput as exc:  # the classes, so every ticket of the batch
        for ticket in tickets:
            give_up_routing(ticket.pk, f"cannot route this ticket: {exc}")
        return outcomes
    # The batch's scoring time shared out: what one ticket cost the worker.
    latency_ms = (time.perf_counter() - started) * 1000 / len(tickets)
    slugs = [t.slug for t in teams]
    by_slug = {t.slug: t for t in teams}
    for row, ticket in enumerate(tickets):
        raw = softmax(logits[row])
        calibrated = apply_calibration(logits[row], serving.version.calibration)
        scores = {slug: round(float(p), 6) for slug, p in zip(slugs, calibrated, strict=True)}
        outcomes[ticket.pk] = store_decision(
            ticket.pk,
            serving.version,
            scorer=serving.scorer.name,
            scores=scores,
            raw_scores={slug: float(p) for slug, p in zip(slugs, raw, strict=True)},
            decision=decide(scores, by_slug),
            latency_ms=latency_ms,
        )
    return outcomes


def store_decision(
    ticket_id: int,
    version,
    *,
    scorer: str,
    scores: dict[str, float],
    raw_scores: dict[str, float],
    decision: Decision,
    latency_ms: float | None,
) -> Prediction | None:
    """Store the prediction and move the ticket, in one transaction; send ``ticket_decided`` on commit.

    The ticket row is locked first: if a person decided it meanwhile, or another run already stored
    this version's prediction, nothing new is written.
    """
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().filter(pk=ticket_id).first()
        if ticket is None or ticket.status != Ticket.Status.ROUTING:
            return None
        prediction = Prediction.objects.filter(ticket=ticket, model_version=version).first()
        if prediction is None:
            prediction = Prediction.objects.create(
                ticket=ticket,
                model_version=version,
                scorer=scorer,
                scores=scores,
                raw_scores=raw_scores,
                chosen_team=decision.team,
                confidence=decision.confidence,
                threshold=decision.threshold,
                decision=decision.decision,
                latency_ms=latency_ms,
            )
        if prediction.decision == Prediction.Decision.AUTO_ROUTED:
            ticket.status = Ticket.Status.ROUTED
            ticket.team = prediction.chosen_team
        else:
            ticket.status = Ticket.Status.NEEDS_TRIAGE
        ticket.routing_error = ""
        ticket.save(update_fields=["status", "team", "routing_error", "updated_at"])
        transaction.on_commit(lambda: ticket_decided.send(sender=Prediction, ticket=ticket, prediction=prediction))
    logger.info(
        "ticket %s: %s %s (%.3f, threshold %.2f) by %s",
        ticket_id,
        prediction.decision,
        prediction.chosen_team.slug if prediction.chosen_team else "-",
        prediction.confidence or 0.0,
        prediction.threshold or 0.0,
        version,
    )
    return prediction
