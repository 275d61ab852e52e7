"""The new-ticket form: it creates the ticket through create_ticket and opens it while it is routed."""

from __future__ import annotations

from triage.models import Ticket


def test_creating_a_ticket_opens_its_page_which_shows_routing(agent_client, agent_alice):
    response = agent_client.post(
        "/tickets/new/",
        {"subject": "Parcel never arrived", "body": "Tracking says delivered.", "requester": "", "channel": "phone"},
    )
    ticket = Ticket.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{ticket.pk}/"
    assert (ticket.subject, ticket.channel, ticket.created_by) == ("Parcel never arrived", "phone", agent_alice)
    assert ticket.status == Ticket.Status.NEW
    assert "Routing…" in agent_client.get(response["Location"]).content.decode()


def test_a_ticket_without_a_message_is_not_created_and_the_form_says_why(agent_client):
    response = agent_client.post("/tickets/new/", {"subject": "Hello", "body": "   ", "channel": "web"})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Ticket.objects.exists()


def test_the_service_rules_apply_to_the_form_too(agent_client):
    response = agent_client.post("/tickets/new/", {"subject": "Bad", "body": "bell \x07 byte", "channel": "web"})
    assert response.status_code == 200
    assert not Ticket.objects.exists()
    assert "contains binary control characters" in response.content.decode()


def test_an_empty_subject_takes_the_first_line_of_the_message(agent_client):
    agent_client.post("/tickets/new/", {"subject": "", "body": "Refund please\nOrder 1234", "channel": "chat"})
    assert Ticket.objects.get().subject == "Refund please"
