"""Queues: which tickets each holds, sorting, pagination, full-text search and walking to the next ticket."""

from __future__ import annotations

import re
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from tests.dashboard.builders import decide, make_ticket
from triage.models import Prediction, Ticket
from triage.queues import QueueParams, neighbour, queue_tickets


def _listed(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-ticket-row="(\d+)"', response.content.decode())]


def test_the_open_queue_lists_every_ticket_but_resolved_ones(agent_client, teams):
    new = make_ticket(subject="new")
    routed = make_ticket(subject="routed")
    decide(routed, {"billing": 0.95, "orders": 0.05}, decision=Prediction.Decision.AUTO_ROUTED)
    resolved = make_ticket(subject="done", status=Ticket.Status.RESOLVED)
    listed = _listed(agent_client.get("/"))
    assert set(listed) == {new.pk, routed.pk}
    assert resolved.pk not in listed


def test_needs_triage_lists_only_tickets_the_router_did_not_decide(agent_client, teams):
    abstained = make_ticket(subject="unclear")
    decide(abstained, {"billing": 0.4, "orders": 0.35}, decision=Prediction.Decision.ABSTAINED)
    routed = make_ticket(subject="clear")
    decide(routed, {"billing": 0.97}, decision=Prediction.Decision.AUTO_ROUTED)
    assert _listed(agent_client.get("/?queue=needs_triage")) == [abstained.pk]


def test_mine_lists_the_open_tickets_assigned_to_the_agent(agent_client, agent_alice, admin_ada):
    mine = make_ticket(subject="mine", assignee=agent_alice)
    make_ticket(subject="mine but resolved", assignee=agent_alice, status=Ticket.Status.RESOLVED)
    make_ticket(subject="someone else's", assignee=admin_ada)
    make_ticket(subject="nobody's")
    assert _listed(agent_client.get("/?queue=mine")) == [mine.pk]


def test_a_team_filter_narrows_any_queue_to_that_team(agent_client, teams):
    billing = make_ticket(subject="b", team=teams["billing"])
    make_ticket(subject="o", team=teams["orders"])
    assert _listed(agent_client.get("/?team=billing")) == [billing.pk]


def test_tabs_show_how_many_tickets_each_queue_holds(agent_client, agent_alice, teams):
    make_ticket(status=Ticket.Status.NEEDS_TRIAGE)
    make_ticket(status=Ticket.Status.NEEDS_TRIAGE, assignee=agent_alice)
    make_ticket(status=Ticket.Status.RESOLVED)
    body = agent_client.get("/").content.decode()
    assert re.search(r'data-queue="needs_triage">\s*Needs triage <span class="count">2</span>', body)
    assert re.search(r'data-queue="mine">\s*Mine <span class="count">1</span>', body)
    assert re.search(r'data-queue="open">\s*All open <span class="count">2</span>', body)


def test_sorting_by_confidence_puts_the_least_sure_decisions_first_and_undecided_last(agent_client, teams):
    sure, unsure, undecided = make_ticket(subject="sure"), make_ticket(subject="unsure"), make_ticket(subject="new")
    decide(sure, {"billing": 0.93})
    decide(unsure, {"orders": 0.41})
    assert _listed(agent_client.get("/?sort=confidence")) == [unsure.pk, sure.pk, undecided.pk]
    assert _listed(agent_client.get("/?sort=-confidence")) == [sure.pk, unsure.pk, undecided.pk]


def test_sorting_by_created_and_updated_in_both_directions(agent_client):
    old, young = make_ticket(subject="old"), make_ticket(subject="young")
    Ticket.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    Ticket.objects.filter(pk=young.pk).update(updated_at=timezone.now() - timedelta(days=1))
    assert _listed(agent_client.get("/")) == [young.pk, old.pk]
    assert _listed(agent_client.get("/?sort=created")) == [old.pk, young.pk]
    assert _listed(agent_client.get("/?sort=-updated")) == [old.pk, young.pk]
    assert _listed(agent_client.get("/?sort=updated")) == [young.pk, old.pk]


def test_an_unknown_sort_or_queue_falls_back_to_the_defaults(agent_client):
    ticket = make_ticket()
    response = agent_client.get("/?sort=password&queue=everything")
    assert response.status_code == 200
    assert _listed(response) == [ticket.pk]


def test_the_list_is_paginated_25_to_a_page_and_keeps_the_filters_in_page_links(agent_client, teams):
    tickets = [make_ticket(subject=f"t{n}", team=teams["billing"]) for n in range(30)]
    first = agent_client.get("/?team=billing")
    assert len(_listed(first)) == 25
    assert 'href="?team=billing&amp;page=2"' in first.content.decode()
    second = agent_client.get("/?team=billing&page=2")
    assert sorted(_listed(second)) == sorted(t.pk for t in tickets[:5])
    assert agent_client.get("/?page=999").status_code == 200


def test_search_finds_tickets_by_word_stems_in_subject_and_body(agent_client):
    refund = make_ticket(subject="Where is my money", body="I asked for a refund of my order last week.")
    sign_in = make_ticket(subject="Cannot sign in", body="The code never arrives.")
    assert _listed(agent_client.get("/?q=refunds")) == [refund.pk]
    assert _listed(agent_client.get("/?q=money")) == [refund.pk]
    assert _listed(agent_client.get("/", {"q": '"sign in" -refund'})) == [sign_in.pk]


def test_search_by_ticket_number(agent_client):
    ticket = make_ticket(subject="Anything", body="at all")
    make_ticket(subject="Other", body="ticket")
    assert _listed(agent_client.get(f"/?q=%23{ticket.pk}")) == [ticket.pk]


def test_search_uses_the_tickets_full_text_gin_index(agent_client, agent_alice):
    for n in range(20):
        make_ticket(subject=f"Parcel {n}", body="where is it")
    tickets = queue_tickets(QueueParams(q="parcel"), agent_alice)
    sql, sql_params = tickets.query.sql_with_params()
    with connection.cursor() as cursor:
        # On a table this small a sequential scan (or a full walk of any b-tree) is cheaper; forbid both
        # to see whether the index applies. GIN is only used through bitmap scans, which stay allowed.
        cursor.execute("ANALYZE triage_ticket")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("EXPLAIN " + sql, sql_params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "ticket_fulltext" in plan, plan


def test_an_htmx_search_returns_only_the_results_part(agent_client):
    make_ticket(subject="Parcel lost")
    response = agent_client.get("/?q=parcel", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="queue-results")
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="queue-results"')
    assert "<html" not in body


def test_next_and_previous_walk_the_queue_the_agent_came_from(agent_client, agent_alice, teams):
    a, b, c = (make_ticket(subject=s, status=Ticket.Status.NEEDS_TRIAGE) for s in "abc")
    make_ticket(subject="routed elsewhere", status=Ticket.Status.ROUTED)
    params = QueueParams(queue="needs_triage")
    # Newest first: c, b, a.
    assert neighbour(params, agent_alice, c) == b
    assert neighbour(params, agent_alice, b) == a
    assert neighbour(params, agent_alice, a) is None
    assert neighbour(params, agent_alice, a, forward=False) == b
    response = agent_client.get(f"/tickets/{c.pk}/next/?queue=needs_triage")
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{b.pk}/?queue=needs_triage"


def test_next_finds_the_following_ticket_after_the_current_one_left_the_queue(agent_alice, teams):
    a, b, c = (make_ticket(subject=s, status=Ticket.Status.NEEDS_TRIAGE) for s in "abc")
    params = QueueParams(queue="needs_triage")
    Ticket.objects.filter(pk=b.pk).update(status=Ticket.Status.ROUTED)  # b was just accepted
    assert neighbour(params, agent_alice, b) == a
    assert neighbour(params, agent_alice, b, forward=False) == c


def test_next_follows_the_confidence_order_through_tickets_without_a_decision(agent_alice, teams):
    low, high, none1, none2 = (make_ticket(subject=s) for s in ("low", "high", "none1", "none2"))
    decide(low, {"billing": 0.3}, status=Ticket.Status.NEEDS_TRIAGE)
    decide(high, {"billing": 0.8}, status=Ticket.Status.NEEDS_TRIAGE)
    params = QueueParams(sort="confidence")
    # Ascending confidence, undecided tickets last (oldest first, as the list shows them).
    order = [low, high, none1, none2]
    assert list(queue_tickets(params, agent_alice)) == order
    for current, following in zip(order, order[1:], strict=False):
        assert neighbour(params, agent_alice, current) == following
        assert neighbour(params, agent_alice, following, forward=False) == current
    assert neighbour(params, agent_alice, none2) is None
    assert neighbour(params, agent_alice, low, forward=False) is None


def test_the_last_ticket_of_a_queue_says_so_instead_of_moving(agent_client):
    only = make_ticket()
    response = agent_client.get(f"/tickets/{only.pk}/next/", follow=True)
    assert b"That was the last ticket in this queue." in response.content


def test_a_full_page_of_the_queue_takes_a_fixed_number_of_queries(
    agent_client, agent_alice, teams, django_assert_max_num_queries
):
    for n in range(30):
        ticket = make_ticket(subject=f"t{n}", assignee=agent_alice)
        decide(ticket, {"billing": 0.6, "orders": 0.4})
    # Session, user, role checks, tab counts, row count, the rows, teams for the filter, and from tags
    # (triage.extensions) the tag filter's options and the page's tag predictions and labels: none per row.
    with django_assert_max_num_queries(13):
        response = agent_client.get("/")
    assert len(_listed(response)) == 25
