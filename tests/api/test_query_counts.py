"""The ticket list and detail cost a fixed number of queries, however many rows they show."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tags.models import Tag
from tests.api.realistic import SUGGESTIONS_PER_TICKET, build_help_desk
from triage.models import Correction, Ticket

# The token with its user and groups (roles) is read from the cache after its first use (one query
# before: api/token_cache.py), then the view's own (api/reads.py): the count and the page, or the
# ticket, its latest prediction, its suggestions and its labels; and the page's (or the ticket's) tags,
# the latest prediction and label of each shown tag in one query: none per row.
LIST_QUERIES = 3
DETAIL_QUERIES = 5


@pytest.fixture
def help_desk(db):
    return build_help_desk(120)


def queries(caller, path: str) -> tuple[int, dict]:
    with CaptureQueriesContext(connection) as captured:
        response = caller.get(path)
    assert response.status_code == 200, response.json()
    return len(captured), response.json()


def test_the_ticket_list_costs_the_same_queries_for_five_or_a_hundred_tickets(
    agent_api, help_desk, django_assert_max_num_queries
):
    queries(agent_api, "/api/tickets/?page_size=5")  # the token's first use: read and stamped (a write)
    few, _ = queries(agent_api, "/api/tickets/?page_size=5")
    with django_assert_max_num_queries(min(few, LIST_QUERIES)):
        response = agent_api.get("/api/tickets/?page_size=100")
    body = response.json()
    assert len(body["results"]) == 100
    assert all(row["decision"] for row in body["results"]), "every ticket shows its latest decision"
    tags = Tag.objects.count()
    assert tags >= 10 and all(len(row["tags"]) == tags for row in body["results"]), "every scored tag is listed"


def test_the_ticket_list_with_filters_costs_no_query_per_row(agent_api, help_desk, django_assert_max_num_queries):
    agent_api.get("/api/tickets/?page_size=5")
    with django_assert_max_num_queries(LIST_QUERIES + 1):  # + the team named in the filter
        response = agent_api.get("/api/tickets/?page_size=100&team=billing&decision=suggested")
    assert response.status_code == 200


def test_a_ticket_with_labels_costs_the_same_queries_as_one_without(
    agent_api, help_desk, django_assert_max_num_queries
):
    labelled = Ticket.objects.filter(corrections__isnull=False).distinct().first()
    bare = Ticket.objects.filter(corrections__isnull=True).first()
    agent_api.get(f"/api/tickets/{bare.pk}/")
    without, _ = queries(agent_api, f"/api/tickets/{bare.pk}/")
    with django_assert_max_num_queries(min(without, DETAIL_QUERIES)):
        response = agent_api.get(f"/api/tickets/{labelled.pk}/")
    body = response.json()
    assert len(body["labels"]) == Correction.objects.filter(ticket=labelled).count() >= 2
    assert all(label["agent"] and label["to_team"] and label["from_team"] for label in body["labels"])
    assert len(body["suggestions"]) == SUGGESTIONS_PER_TICKET
    assert body["prediction"]["model_version"]["scorer"] == "nli", "the latest decision, by the current version"
    assert all(suggestion["passage"] for suggestion in body["suggestions"])
    assert len(body["tags"]) == Tag.objects.count() >= 10
