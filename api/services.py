"""Idempotent ticket creation, and the routing labels the API records.

``accept_routing`` and ``correct_routing`` are thin stand-ins: the triage app is adding its own
(same names and arguments), and the API switches to them once they exist.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from triage.models import Correction, Prediction, Team, Ticket
from triage.services import record_label

from .models import IdempotencyKey


def _latest_prediction(ticket: Ticket) -> Prediction | None:
    return ticket.predictions.select_related("chosen_team", "model_version").order_by("-created_at").first()


def _route_to(ticket: Ticket, team: Team) -> None:
    ticket.team = team
    if ticket.status != Ticket.Status.RESOLVED:
        ticket.status = Ticket.Status.ROUTED
    ticket.save(update_fields=["team", "status", "updated_at"])


def accept_routing(ticket: Ticket, *, agent, source: str = "api") -> Correction:
    """Confirm the team the ticket was routed to (or the router's suggestion) as its label."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        prediction = _latest_prediction(ticket)
        team = ticket.team or (prediction.chosen_team if prediction is not None else None)
        if team is None:
            raise ValidationError({"team": ["there is no routing or suggestion to accept; send a correction"]})
        label = record_label(
            ticket, team, agent=agent, kind=Correction.Kind.ACCEPTED, source=source, prediction=prediction
        )
        _route_to(ticket, team)
    return label


def correct_routing(ticket: Ticket, team: Team, *, agent, source: str = "api") -> Correction:
    """Label the ticket with ``team`` and route it there. Naming the team it already has is an acceptance."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        prediction = _latest_prediction(ticket)
        current = ticket.team or (prediction.chosen_team if prediction is not None else None)
        kind = Correction.Kind.ACCEPTED if current == team else Correction.Kind.CORRECTED
        label = record_label(ticket, team, agent=agent, kind=kind, source=source, prediction=prediction)
        _route_to(ticket, team)
    return label


def request_fingerprint(data: Any) -> str:
    """SHA-256 of the request body as canonical JSON, so that key order and spacing do not matter."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class IdempotencyKeyReused(Exception):
    """The key was used before with a different request body."""


@dataclass(frozen=True)
class Outcome:
    status: int
    body: Any
    replayed: bool = False


def run_once(user, key: str, fingerprint: str, create: Callable[[], tuple[int, Any, Ticket | None]]) -> Outcome:
    """Run ``create`` once per (user, key) and return its stored response to every later call.

    A concurrent request with the same key waits on the key's unique index until the first one
    commits, then replays its answer. When ``create`` raises, nothing is kept, not even the key,
    so that a client can fix its request and send it again under the same key.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    user=user, key=key, request_hash=fingerprint, response_status=0, response_body={}
                )
        except IntegrityError:
            record = IdempotencyKey.objects.get(user=user, key=key)
            if record.request_hash != fingerprint:
                raise IdempotencyKeyReused(key) from None
            return Outcome(record.response_status, record.response_body, replayed=True)
        status, body, ticket = create()
        record.response_status, record.response_body, record.ticket = status, body, ticket
        record.save(update_fields=["response_status", "response_body", "ticket"])
    return Outcome(status, body)
