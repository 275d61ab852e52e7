"""Verb-named writes the dashboard makes on a ticket besides routing labels: assign and resolve.

Accepting and correcting a routing decision are ``triage.services.accept_routing`` and
``correct_routing``; they record the label retraining uses.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import Correction, Team, Ticket
from .roles import is_agent
from .services import record_label

UNCHANGED = object()


def assign_ticket(ticket: Ticket, *, assignee=UNCHANGED, team: Team | None = None, agent=None) -> Ticket:
    """Give ``ticket`` to another agent (``None`` unassigns) and/or move it to another team.

    Moving it to another team stores a ``reassigned`` label from its current team, so the history
    shows who moved it and retraining can see where it ended up. Returns the updated ticket.

    >>> assign_ticket(ticket, assignee=alice)            # doctest: +SKIP
    >>> assign_ticket(ticket, team=billing, agent=alice)  # doctest: +SKIP
    """
    if assignee is not UNCHANGED and assignee is not None and not (assignee.is_active and is_agent(assignee)):
        raise ValidationError({"assignee": ["can only be an active agent"]})
    if team is not None and not team.active:
        raise ValidationError({"team": ["is not active"]})
    with transaction.atomic():
        # The routing worker writes the same row; lock it so neither write is lost.
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        changed: list[str] = []
        if assignee is not UNCHANGED and locked.assignee_id != (assignee.pk if assignee else None):
            locked.assignee = assignee
            changed.append("assignee")
        if team is not None and locked.team_id != team.pk:
            record_label(locked, team, agent=agent, kind=Correction.Kind.REASSIGNED, source="dashboard")
            locked.team = team
            changed.append("team")
            if locked.status in (Ticket.Status.NEW, Ticket.Status.NEEDS_TRIAGE):
                locked.status = Ticket.Status.ROUTED
                changed.append("status")
        if changed:
            locked.save(update_fields=[*changed, "updated_at"])
    return locked


def resolve_ticket(ticket: Ticket) -> Ticket:
    """Mark ``ticket`` resolved now. Resolving a resolved ticket changes nothing."""
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if locked.status != Ticket.Status.RESOLVED:
            locked.status = Ticket.Status.RESOLVED
            locked.resolved_at = timezone.now()
            locked.save(update_fields=["status", "resolved_at", "updated_at"])
    return locked
