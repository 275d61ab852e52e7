"""Input a client can send that used to crash the API (500) or answer an HTML page: every answer is JSON
and a 4xx, and nothing is stored."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import Client, override_settings

from api import errors
from api.models import IdempotencyKey
from api.parsers import MAX_DEPTH
from search.models import Article
from triage.models import Correction, Team, Ticket


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.fixture
def rows(db, teams, ticket) -> dict:
    return {"ticket": ticket, "team": teams["billing"], "article": Article.objects.create(title="t", body="b")}


def json_endpoints(rows) -> list[tuple[str, str]]:
    """Every operation of the API that reads a JSON body."""
    ticket, team, article = rows["ticket"].pk, rows["team"].pk, rows["article"].pk
    return [
        ("post", "/api/tickets/"),
        ("post", f"/api/tickets/{ticket}/correct/"),
        ("post", f"/api/tickets/{ticket}/article-feedback/"),
        ("patch", f"/api/thresholds/{team}/"),
        ("post", "/api/articles/"),
        ("put", f"/api/articles/{article}/"),
        ("patch", f"/api/articles/{article}/"),
    ]


def stored_counts() -> tuple[int, ...]:
    return (Ticket.objects.count(), Correction.objects.count(), IdempotencyKey.objects.count(), Article.objects.count())


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 100_000])
def test_json_nested_too_deep_is_a_400_on_every_json_endpoint(admin_api, rows, levels):
    before = stored_counts()
    for method, path in json_endpoints(rows):
        response = getattr(admin_api, method)(path, deep(levels))
        assert response.status_code == 400, (method, path, response.content[:200])
        assert response.json() == {"detail": f"JSON parse error - nested deeper than {MAX_DEPTH} levels"}
    assert stored_counts() == before


def test_json_nested_to_the_limit_is_read_as_usual(integration_api, db):
    body = {"body": "Refund please", "subject": "Refund", "extra": json.loads(deep(MAX_DEPTH - 1))}
    response = integration_api.post("/api/tickets/", body)
    assert response.status_code == 201


@pytest.mark.parametrize("team", ["bill\x00ing", "\x00", "bill\ud800ing", "\udfff", "billing\n", "bil ling"])
def test_a_team_that_cannot_be_a_slug_is_an_unknown_team_wherever_a_team_is_named(admin_api, rows, team):
    before = stored_counts()
    ticket, article = rows["ticket"].pk, rows["article"].pk
    for method, path, body in [
        ("post", "/api/tickets/", {"body": "Invoice wrong", "team": team}),
        ("post", f"/api/tickets/{ticket}/correct/", {"team": team}),
        ("post", "/api/articles/", {"title": "Refunds", "body": "How refunds work.", "team": team}),
        ("patch", f"/api/articles/{article}/", {"team": team}),
    ]:
        response = getattr(admin_api, method)(path, body)
        assert response.status_code == 400, (method, path)
        assert response.json() == {"team": [f"Unknown team {team!r}."]}
    assert stored_counts() == before


def test_a_ticket_filter_by_a_team_with_a_nul_byte_is_a_400(agent_api, teams):
    response = agent_api.get("/api/tickets/", {"team": "bill\x00ing"})
    assert response.status_code == 400
    assert "team" in response.json()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100_000)
def test_a_body_over_the_size_limit_is_a_json_413_and_stores_nothing(integration_api, db):
    response = integration_api.post("/api/tickets/", {"body": "x" * 200_000})
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body larger than 100000 bytes."}
    assert not Ticket.objects.exists()


def test_a_ten_megabyte_body_is_a_json_413_with_the_default_limit(integration_api, db):
    response = integration_api.post("/api/tickets/", {"body": "x" * 10_000_000})
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert not Ticket.objects.exists()


@pytest.mark.parametrize(
    "path", ["/api/nowhere/", "/api/tickets/not-a-number/", "/api/articles/%C2%84/", "/api/tickets/1/nothing/"]
)
def test_an_api_url_no_route_matches_is_a_json_404(client, db, path):
    response = Client(raise_request_exception=False).get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_page_outside_the_api_keeps_the_html_404(client, db):
    response = Client(raise_request_exception=False).get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_django_refusing_an_oversized_body_outside_drf_answers_json_under_the_api_only(rf):
    """Django raises RequestDataTooBig wherever the body is read and hands it to handler400."""
    api_answer = errors.bad_request(rf.post("/api/anything/"), RequestDataTooBig("too big"))
    assert api_answer.status_code == 413 and api_answer["Content-Type"] == "application/json"
    page_answer = errors.bad_request(rf.post("/tickets/"), RequestDataTooBig("too big"))
    assert page_answer.status_code == 400 and page_answer["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "query", ["page_size=null", "page_size=0", "page_size=201", "page_size=-1", "page_size=1.5", "page=0", "page=x"]
)
def test_a_bad_page_or_page_size_is_a_400(agent_api, db, query):
    for path in ("/api/tickets/", "/api/teams/", "/api/articles/"):
        response = agent_api.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query)
        assert set(response.json()) == {query.split("=")[0]}


def test_a_page_past_the_last_one_is_a_404(agent_api, db):
    assert agent_api.get("/api/teams/?page=2").status_code == 404
    assert agent_api.get("/api/teams/?page=" + "9" * 5000).status_code == 404


@pytest.mark.parametrize("name", ["created_after", "created_before"])
def test_an_empty_date_filter_is_a_400_not_ignored(agent_api, db, name):
    response = agent_api.get(f"/api/tickets/?{name}=")
    assert response.status_code == 400
    assert name in response.json()


def test_page_size_200_is_the_largest_accepted(agent_api, db):
    Team.objects.bulk_create(Team(slug=f"t{i}", name=f"T{i}") for i in range(3))
    assert agent_api.get("/api/teams/?page_size=200").status_code == 200
