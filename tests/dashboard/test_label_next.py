"""Label next: unlabelled tickets in the order a label teaches most, spread across predicted teams."""

from __future__ import annotations

import re

from tests.dashboard.builders import decide, make_ticket
from triage.models import Correction, Prediction, Ticket
from triage.queues import QueueParams, label_next_order, neighbour
from triage.services import accept_routing


def _listed(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-ticket-row="(\d+)"', response.content.decode())]


def _decided(subject: str, scores: dict[str, float], **fields) -> Ticket:
    ticket = make_ticket(subject=subject, **fields)
    decide(ticket, scores)
    return ticket


def test_the_least_certain_ticket_comes_first_and_teams_take_turns(agent_client, teams):
    # Billing has the three hardest tickets; a plain sort by margin would list them all first.
    b1 = _decided("b1", {"billing": 0.50, "orders": 0.48, "account": 0.02})
    b2 = _decided("b2", {"billing": 0.52, "returns": 0.46, "orders": 0.02})
    b3 = _decided("b3", {"billing": 0.55, "orders": 0.43, "account": 0.02})
    o1 = _decided("o1", {"orders": 0.70, "billing": 0.30})
    a1 = _decided("a1", {"account": 0.95, "billing": 0.05})
    assert _listed(agent_client.get("/?queue=label_next")) == [b1.pk, o1.pk, a1.pk, b2.pk, b3.pk]


def test_copies_of_one_doubt_do_not_fill_the_top_of_the_queue(agent_client, teams):
    # Five tickets torn between billing and orders in the same way (a customer who wrote five times)
    # and one torn between billing and returns: by margin alone the five copies would come first.
    copies = [_decided(f"copy {i}", {"billing": 0.50 + 0.005 * i, "orders": 0.50 - 0.005 * i}) for i in range(5)]
    other = _decided("other doubt", {"billing": 0.56, "returns": 0.44})
    listed = _listed(agent_client.get("/?queue=label_next"))
    assert sorted(listed) == sorted([c.pk for c in copies] + [other.pk])
    assert other.pk in listed[:3]


def test_labelled_resolved_and_undecided_tickets_are_left_out(agent_client, agent_alice, teams):
    kept = _decided("kept", {"billing": 0.6, "orders": 0.4})
    labelled = _decided("labelled", {"billing": 0.51, "orders": 0.49})
    accept_routing(labelled, agent=agent_alice)
    resolved = _decided("resolved", {"billing": 0.5, "orders": 0.5})
    Ticket.objects.filter(pk=resolved.pk).update(status=Ticket.Status.RESOLVED)
    make_ticket(subject="not routed yet")
    assert _listed(agent_client.get("/?queue=label_next")) == [kept.pk]
    assert Correction.objects.filter(ticket=labelled).exists()


def test_the_team_filter_keeps_the_tickets_predicted_for_that_team(agent_client, teams):
    # The tickets have no team yet (the router abstained): the filter reads the prediction.
    billing = make_ticket(subject="billing?")
    decide(billing, {"billing": 0.45, "orders": 0.40}, decision=Prediction.Decision.ABSTAINED)
    orders = make_ticket(subject="orders?")
    decide(orders, {"orders": 0.45, "billing": 0.40}, decision=Prediction.Decision.ABSTAINED)
    assert _listed(agent_client.get("/?queue=label_next&team=orders")) == [orders.pk]
    assert label_next_order(team="billing") == [billing.pk]


def test_the_tab_counts_the_tickets_waiting_for_a_label(agent_client, teams):
    _decided("one", {"billing": 0.6, "orders": 0.4})
    _decided("two", {"orders": 0.6, "billing": 0.4})
    page = agent_client.get("/?queue=label_next").content.decode()
    assert re.search(r'data-queue="label_next"[^>]*>\s*Label next <span class="count">2</span>', page)
    assert "data-label-next-help" in page


def test_a_sort_asked_for_in_the_url_does_not_change_the_order(agent_client, teams):
    sure = _decided("sure", {"billing": 0.9, "orders": 0.1})
    torn = _decided("torn", {"orders": 0.5, "billing": 0.5})
    assert _listed(agent_client.get("/?queue=label_next&sort=-confidence")) == [torn.pk, sure.pk]
    assert QueueParams.from_query({"queue": "open", "sort": "position"}).sort == "-created"


def test_accept_and_next_goes_on_to_the_ticket_that_now_teaches_most(agent_client, teams):
    first = _decided("first", {"billing": 0.50, "orders": 0.50})
    second = _decided("second", {"orders": 0.60, "billing": 0.40})
    third = _decided("third", {"billing": 0.80, "orders": 0.20})
    response = agent_client.post(f"/tickets/{first.pk}/accept/?queue=label_next", {"then": "next"})
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{second.pk}/?queue=label_next"
    # j/k on the ticket page walk the same order; past the end there is nothing.
    params = QueueParams.from_query({"queue": "label_next"})
    assert neighbour(params, None, second, forward=True) == third
    assert neighbour(params, None, second, forward=False) is None  # first has left: it is labelled
    assert neighbour(params, None, third, forward=True) is None


def test_people_without_the_agent_role_cannot_see_it(client, outsider_olga, teams):
    _decided("secret", {"billing": 0.5, "orders": 0.5})
    assert client.get("/?queue=label_next").status_code == 302  # to the login page
    client.force_login(outsider_olga)
    assert client.get("/?queue=label_next").status_code == 403
