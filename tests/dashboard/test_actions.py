"""What agents do on a ticket: accept or correct the routing (the labels retraining uses), reassign,
take and resolve."""

from __future__ import annotations

import pytest

from tests.dashboard.builders import decide, make_ticket
from triage import services
from triage.models import Correction, Prediction, Ticket

needs_routing_labels = pytest.mark.skipif(
    not (hasattr(services, "accept_routing") and hasattr(services, "correct_routing")),
    reason="triage.services.accept_routing / correct_routing are not there yet (routing engineer)",
)


@needs_routing_labels
def test_accepting_stores_who_when_which_team_and_the_prediction_it_answers(agent_client, agent_alice, teams):
    ticket = make_ticket()
    prediction = decide(ticket, {"billing": 0.72, "orders": 0.2}, status=Ticket.Status.NEEDS_TRIAGE)
    response = agent_client.post(f"/tickets/{ticket.pk}/accept/?queue=needs_triage")
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{ticket.pk}/?queue=needs_triage"
    label = Correction.objects.get(ticket=ticket)
    assert label.kind == Correction.Kind.ACCEPTED
    assert (label.agent, label.from_team, label.to_team) == (agent_alice, teams["billing"], teams["billing"])
    assert (label.prediction, label.model_version) == (prediction, prediction.model_version)
    assert label.created_at is not None
    ticket.refresh_from_db()
    assert ticket.team == teams["billing"]


@needs_routing_labels
def test_correcting_from_an_alternative_stores_from_and_to_and_moves_the_ticket(agent_client, agent_alice, teams):
    ticket = make_ticket()
    prediction = decide(ticket, {"billing": 0.55, "returns": 0.4})
    agent_client.post(f"/tickets/{ticket.pk}/correct/", {"team": "returns"})
    label = Correction.objects.get(ticket=ticket)
    assert label.kind == Correction.Kind.CORRECTED
    assert (label.from_team, label.to_team, label.agent) == (teams["billing"], teams["returns"], agent_alice)
    assert label.prediction == prediction
    ticket.refresh_from_db()
    assert ticket.team == teams["returns"]


@needs_routing_labels
def test_picking_the_team_the_model_chose_counts_as_an_acceptance(agent_client, teams):
    ticket = make_ticket()
    decide(ticket, {"billing": 0.55, "returns": 0.4})
    agent_client.post(f"/tickets/{ticket.pk}/correct/", {"team": "billing"})
    assert Correction.objects.get(ticket=ticket).kind == Correction.Kind.ACCEPTED


@needs_routing_labels
def test_correcting_an_abstained_decision_routes_the_ticket(agent_client, teams):
    ticket = make_ticket()
    decide(ticket, {"billing": 0.4, "orders": 0.38}, decision=Prediction.Decision.ABSTAINED)
    agent_client.post(f"/tickets/{ticket.pk}/correct/", {"team": "orders"})
    label = Correction.objects.get(ticket=ticket)
    assert label.to_team == teams["orders"]
    ticket.refresh_from_db()
    assert ticket.team == teams["orders"]
    assert ticket.status != Ticket.Status.NEEDS_TRIAGE


@needs_routing_labels
def test_accept_and_next_opens_the_next_ticket_of_the_queue(agent_client, teams):
    older, newer = make_ticket(subject="older"), make_ticket(subject="newer")
    for ticket in (older, newer):
        decide(ticket, {"billing": 0.6}, status=Ticket.Status.NEEDS_TRIAGE)
    response = agent_client.post(f"/tickets/{newer.pk}/accept/?queue=needs_triage", {"then": "next"})
    assert response["Location"] == f"/tickets/{older.pk}/?queue=needs_triage"


@needs_routing_labels
def test_accepting_when_the_router_chose_no_team_stores_nothing_and_says_why(agent_client, teams):
    ticket = make_ticket()
    decide(ticket, {"billing": 0.4, "orders": 0.38}, decision=Prediction.Decision.ABSTAINED)
    page = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert 'data-shortcut="accept" disabled' in page
    response = agent_client.post(f"/tickets/{ticket.pk}/accept/", follow=True)
    assert b"pick a team instead" in response.content
    assert not Correction.objects.exists()


@needs_routing_labels
def test_picking_the_models_team_after_a_correction_moves_the_ticket_back(agent_client, teams):
    ticket = make_ticket()
    decide(ticket, {"billing": 0.55, "returns": 0.4})
    agent_client.post(f"/tickets/{ticket.pk}/correct/", {"team": "returns"})
    agent_client.post(f"/tickets/{ticket.pk}/correct/", {"team": "billing"})
    ticket.refresh_from_db()
    assert ticket.team == teams["billing"]
    # The latest label wins for training: it names the model's team again.
    assert Correction.objects.order_by("-created_at").first().to_team == teams["billing"]


def test_correcting_to_an_unknown_or_inactive_team_is_refused(agent_client, teams):
    ticket = make_ticket()
    decide(ticket, {"billing": 0.6})
    teams["orders"].active = False
    teams["orders"].save()
    for slug in ("nope", "orders"):
        response = agent_client.post(f"/tickets/{ticket.pk}/correct/", {"team": slug}, follow=True)
        assert b"Choose an active team" in response.content
    assert not Correction.objects.exists()


def test_reassigning_to_another_agent_changes_the_assignee_only(agent_client, agent_alice, admin_ada, teams):
    ticket = make_ticket(team=teams["billing"], status=Ticket.Status.ROUTED)
    agent_client.post(f"/tickets/{ticket.pk}/reassign/", {"assignee": admin_ada.pk, "team": ""})
    ticket.refresh_from_db()
    assert (ticket.assignee, ticket.team) == (admin_ada, teams["billing"])
    assert not Correction.objects.exists()
    agent_client.post(f"/tickets/{ticket.pk}/reassign/", {"assignee": "", "team": ""})
    ticket.refresh_from_db()
    assert ticket.assignee is None


def test_reassigning_to_another_team_stores_a_reassigned_label(agent_client, agent_alice, teams):
    ticket = make_ticket(team=teams["billing"], status=Ticket.Status.ROUTED)
    agent_client.post(f"/tickets/{ticket.pk}/reassign/", {"assignee": "", "team": "returns"})
    ticket.refresh_from_db()
    assert ticket.team == teams["returns"]
    label = Correction.objects.get(ticket=ticket)
    assert (label.kind, label.from_team, label.to_team, label.agent) == (
        Correction.Kind.REASSIGNED,
        teams["billing"],
        teams["returns"],
        agent_alice,
    )


def test_a_ticket_cannot_be_assigned_to_a_user_who_is_not_an_agent(agent_client, outsider_olga):
    ticket = make_ticket()
    response = agent_client.post(f"/tickets/{ticket.pk}/reassign/", {"assignee": outsider_olga.pk}, follow=True)
    assert b"Choose an agent" in response.content
    ticket.refresh_from_db()
    assert ticket.assignee is None


def test_assign_to_me(agent_client, agent_alice):
    ticket = make_ticket()
    agent_client.post(f"/tickets/{ticket.pk}/take/")
    ticket.refresh_from_db()
    assert ticket.assignee == agent_alice


def test_resolving_sets_the_status_and_the_time_once(agent_client):
    ticket = make_ticket()
    agent_client.post(f"/tickets/{ticket.pk}/resolve/")
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.RESOLVED
    first = ticket.resolved_at
    assert first is not None
    agent_client.post(f"/tickets/{ticket.pk}/resolve/")
    ticket.refresh_from_db()
    assert ticket.resolved_at == first


def test_actions_only_take_post(agent_client):
    ticket = make_ticket()
    for action in ("accept", "correct", "reassign", "take", "resolve"):
        assert agent_client.get(f"/tickets/{ticket.pk}/{action}/").status_code == 405
