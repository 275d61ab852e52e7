"""Verb-named functions that write tickets, teams and labels. Views, the API, importers and tasks
call these instead of saving models themselves, so every write is validated the same way."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from .models import BODY_MAX, SUBJECT_MAX, Correction, Team, Ticket
from .work import request_work

EXTERNAL_ID_MAX = 200
REQUESTER_MAX = 254
# Postgres text cannot hold NUL; other C0 controls (except tab/newline) are binary noise in a ticket.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _clean_text(value: Any, field: str, max_len: int, *, required: bool, errors: dict[str, list[str]]) -> str:
    if value is None:
        value = ""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            errors.setdefault(field, []).append("is not valid UTF-8 text")
            return ""
    if not isinstance(value, str):
        errors.setdefault(field, []).append(f"must be text, got {type(value).__name__}")
        return ""
    if _CONTROL.search(value):
        errors.setdefault(field, []).append("contains binary control characters")
        return ""
    value = value.strip()
    if required and not value:
        errors.setdefault(field, []).append("is required and cannot be blank")
    elif len(value) > max_len:
        errors.setdefault(field, []).append(f"is {len(value)} characters long; the limit is {max_len}")
    return value


def clean_ticket_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Validate raw ticket fields (from a form, the API or an import row).

    Returns the cleaned fields, or raises ``ValidationError`` with a message per field.

    >>> clean_ticket_fields({"subject": " Card declined ", "body": "It fails at checkout."})["subject"]
    'Card declined'
    """
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {
        "subject": _clean_text(data.get("subject"), "subject", SUBJECT_MAX, required=False, errors=errors),
        "body": _clean_text(data.get("body"), "body", BODY_MAX, required=True, errors=errors),
        "requester": _clean_text(data.get("requester"), "requester", REQUESTER_MAX, required=False, errors=errors),
    }
    if not cleaned["subject"] and "body" not in errors:
        # Chat and phone tickets often arrive without a subject: the first line stands in for one.
        cleaned["subject"] = cleaned["body"].splitlines()[0][:SUBJECT_MAX]
    if cleaned["requester"]:
        try:
            validate_email(cleaned["requester"])
        except ValidationError:
            errors.setdefault("requester", []).append("is not a valid e-mail address")
    channel = data.get("channel") or Ticket.Channel.WEB
    if channel not in Ticket.Channel.values:
        errors.setdefault("channel", []).append(f"must be one of {', '.join(Ticket.Channel.values)}")
    cleaned["channel"] = channel
    external_id = data.get("external_id")
    if external_id not in (None, ""):
        cleaned["external_id"] = _clean_text(
            str(external_id), "external_id", EXTERNAL_ID_MAX, required=True, errors=errors
        )
    else:
        cleaned["external_id"] = None
    team = data.get("team")
    cleaned["team"] = None
    if team not in (None, ""):
        found = Team.objects.filter(slug=str(team)).first() if isinstance(team, str) else None
        if isinstance(team, Team):
            found = team
        if found is None:
            errors.setdefault("team", []).append(f"unknown team {team!r}")
        cleaned["team"] = found
    if errors:
        raise ValidationError({field: msgs for field, msgs in errors.items()})
    return cleaned


def create_ticket(data: dict[str, Any], *, created_by=None, route: bool = True) -> tuple[Ticket, bool]:
    """Create a ticket from raw fields; with ``route``, record its work (routing, suggestions) with it.

    The work is sent to the workers after commit, or by the sweeper if the broker is down then
    (``triage.work``): the ticket is stored and answered for either way.

    Idempotent by ``external_id``: a second call with the same id returns the stored ticket and
    ``created=False``. Raises ``ValidationError`` on bad input; nothing is stored then.
    """
    fields = clean_ticket_fields(data)
    label_team = fields.pop("team")
    with transaction.atomic():
        if fields["external_id"]:
            existing = Ticket.objects.select_for_update().filter(external_id=fields["external_id"]).first()
            if existing is not None:
                return existing, False
        ticket = Ticket.objects.create(**fields, created_by=created_by)
        if label_team is not None:
            record_label(ticket, label_team, agent=created_by, kind=Correction.Kind.IMPORTED, source="import")
        if route:
            request_work(ticket.pk)
    return ticket, True


def record_label(
    ticket: Ticket,
    team: Team,
    *,
    agent=None,
    kind: str,
    source: str = "dashboard",
    prediction=None,
) -> Correction:
    """Store one label for ``ticket``. The latest label wins for training; all stay for audit."""
    from_team = prediction.chosen_team if prediction is not None else ticket.team
    return Correction.objects.create(
        ticket=ticket,
        prediction=prediction,
        model_version=prediction.model_version if prediction is not None else None,
        kind=kind,
        from_team=from_team,
        to_team=team,
        to_team_slug=team.slug,
        agent=agent,
        source=source,
    )


# --- Routing labels ----------------------------------------------------------------------------------
def _latest_prediction(ticket: Ticket):
    return ticket.predictions.select_related("chosen_team", "model_version").newest_first().first()


def _route_to(ticket: Ticket, team: Team) -> None:
    ticket.team = team
    if ticket.status != Ticket.Status.RESOLVED:
        ticket.status = Ticket.Status.ROUTED
    ticket.routing_error = ""
    ticket.save(update_fields=["team", "status", "routing_error", "updated_at"])


def accept_routing(ticket: Ticket, *, agent, source: str = "dashboard") -> Correction:
    """An agent confirms the team the ticket was routed to, or the router's suggestion: a label.

    Routes the ticket there (status ``routed``). Raises ``ValidationError`` when there is nothing to
    accept (no team and no suggestion: the router abstained); nothing is stored then.

    >>> accept_routing(ticket, agent=alice)                      # doctest: +SKIP
    <Correction: accepted>
    """
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        prediction = _latest_prediction(ticket)
        team = ticket.team or (prediction.chosen_team if prediction is not None else None)
        if team is None:
            raise ValidationError({"team": ["there is no routing or suggestion to accept; pick a team instead"]})
        label = record_label(
            ticket, team, agent=agent, kind=Correction.Kind.ACCEPTED, source=source, prediction=prediction
        )
        _route_to(ticket, team)
    return label


def correct_routing(ticket: Ticket, team: Team, *, agent, source: str = "dashboard") -> Correction:
    """An agent names the right team for the ticket: a label, and the ticket moves there.

    Naming the team the ticket already has (or was suggested) is an acceptance. Raises
    ``ValidationError`` for an inactive team; nothing is stored then.
    """
    if team is None or not team.active:
        raise ValidationError({"team": ["choose an active team"]})
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        prediction = _latest_prediction(ticket)
        current = ticket.team or (prediction.chosen_team if prediction is not None else None)
        kind = Correction.Kind.ACCEPTED if current == team else Correction.Kind.CORRECTED
        label = record_label(ticket, team, agent=agent, kind=kind, source=source, prediction=prediction)
        _route_to(ticket, team)
    return label
