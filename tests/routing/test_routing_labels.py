"""Accepting and correcting a routing decision: the label is recorded and the ticket moves."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from mlops.models import ModelVersion
from triage.models import Correction, Prediction, Ticket
from triage.services import accept_routing, correct_routing

pytestmark = pytest.mark.django_db


def decided(teams, decision: str, chosen: str | None, status: str) -> tuple[Ticket, Prediction]:
    ticket = Ticket.objects.create(subject="Charged twice", body="Charged twice this month.", status=status)
    version = ModelVersion.objects.create(scorer="embedding", model_ref="packaged", version="embedding-test")
    prediction = Prediction.objects.create(
        ticket=ticket,
        model_version=version,
        scorer="embedding",
        scores={"billing": 0.7, "sign-in": 0.2, "delivery": 0.1},
        raw_scores={"billing": 0.7, "sign-in": 0.2, "delivery": 0.1},
        chosen_team=teams[chosen] if chosen else None,
        confidence=0.7,
        threshold=0.9,
        decision=decision,
    )
    if decision == Prediction.Decision.AUTO_ROUTED:
        ticket.team = teams[chosen]
        ticket.save()
    return ticket, prediction


def test_accepting_a_suggestion_labels_it_and_routes_the_ticket(teams, agent_alice):
    ticket, prediction = decided(teams, Prediction.Decision.SUGGESTED, "billing", Ticket.Status.NEEDS_TRIAGE)
    label = accept_routing(ticket, agent=agent_alice, source="api")
    assert (label.kind, label.to_team, label.from_team, label.to_team_slug) == (
        "accepted",
        teams["billing"],
        teams["billing"],
        "billing",
    )
    assert (label.prediction, label.model_version, label.agent, label.source) == (
        prediction,
        prediction.model_version,
        agent_alice,
        "api",
    )
    ticket.refresh_from_db()
    assert (ticket.status, ticket.team) == (Ticket.Status.ROUTED, teams["billing"])


def test_accepting_an_abstention_is_refused_and_stores_nothing(teams, agent_alice):
    ticket, _ = decided(teams, Prediction.Decision.ABSTAINED, None, Ticket.Status.NEEDS_TRIAGE)
    with pytest.raises(ValidationError, match="nothing|no routing or suggestion"):
        accept_routing(ticket, agent=agent_alice)
    assert not Correction.objects.exists()
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.NEEDS_TRIAGE


def test_correcting_an_auto_route_labels_from_and_to_and_moves_the_ticket(teams, agent_alice):
    ticket, prediction = decided(teams, Prediction.Decision.AUTO_ROUTED, "billing", Ticket.Status.ROUTED)
    label = correct_routing(ticket, teams["delivery"], agent=agent_alice)
    assert (label.kind, label.from_team, label.to_team, label.source) == (
        "corrected",
        teams["billing"],
        teams["delivery"],
        "dashboard",
    )
    assert label.prediction == prediction
    ticket.refresh_from_db()
    assert (ticket.status, ticket.team) == (Ticket.Status.ROUTED, teams["delivery"])


def test_naming_the_suggested_team_is_an_acceptance(teams, agent_alice):
    ticket, _ = decided(teams, Prediction.Decision.SUGGESTED, "billing", Ticket.Status.NEEDS_TRIAGE)
    assert correct_routing(ticket, teams["billing"], agent=agent_alice).kind == Correction.Kind.ACCEPTED


def test_correcting_an_abstention_routes_the_ticket(teams, agent_alice):
    ticket, _ = decided(teams, Prediction.Decision.ABSTAINED, None, Ticket.Status.NEEDS_TRIAGE)
    label = correct_routing(ticket, teams["sign-in"], agent=agent_alice)
    assert (label.kind, label.from_team, label.to_team) == ("corrected", None, teams["sign-in"])
    ticket.refresh_from_db()
    assert (ticket.status, ticket.team) == (Ticket.Status.ROUTED, teams["sign-in"])


def test_a_resolved_ticket_stays_resolved_when_labeled(teams, agent_alice):
    ticket, _ = decided(teams, Prediction.Decision.AUTO_ROUTED, "billing", Ticket.Status.RESOLVED)
    correct_routing(ticket, teams["delivery"], agent=agent_alice)
    ticket.refresh_from_db()
    assert (ticket.status, ticket.team) == (Ticket.Status.RESOLVED, teams["delivery"])


def test_an_inactive_team_is_refused(teams, agent_alice):
    ticket, _ = decided(teams, Prediction.Decision.SUGGESTED, "billing", Ticket.Status.NEEDS_TRIAGE)
    teams["delivery"].active = False
    teams["delivery"].save()
    with pytest.raises(ValidationError, match="active team"):
        correct_routing(ticket, teams["delivery"], agent=agent_alice)
    assert not Correction.objects.exists()


def test_the_latest_label_is_what_calibration_reads(teams, agent_alice):
    ticket, _ = decided(teams, Prediction.Decision.SUGGESTED, "billing", Ticket.Status.NEEDS_TRIAGE)
    accept_routing(ticket, agent=agent_alice)
    correct_routing(ticket, teams["delivery"], agent=agent_alice)
    assert Correction.objects.slug_per_ticket() == {ticket.pk: "delivery"}
