"""Who may call what: anonymous, no-role user, integration token, agent, admin (and narrowed scopes)."""

from __future__ import annotations

import pytest

from api.models import ApiToken
from search.models import Article
from tests.api.conftest import caller_for
from tests.tags.builders import make_tag_sets

NEW_TICKET = {"subject": "Refund", "body": "Please refund order 1234."}


def requests(ticket, team, article, version):
    """(name, method, path, body) for every endpoint, reading and writing."""
    return {
        "tickets.list": ("get", "/api/tickets/", None),
        "tickets.create": ("post", "/api/tickets/", NEW_TICKET),
        "tickets.detail": ("get", f"/api/tickets/{ticket.pk}/", None),
        "tickets.correct": ("post", f"/api/tickets/{ticket.pk}/correct/", {"team": team.slug}),
        "tickets.accept": ("post", f"/api/tickets/{ticket.pk}/accept/", {}),
        "tickets.tags": ("post", f"/api/tickets/{ticket.pk}/tags/", {"tag": "topics/security", "action": "add"}),
        "tickets.feedback": (
            "post",
            f"/api/tickets/{ticket.pk}/article-feedback/",
            {"article": article.pk, "helpful": True},
        ),
        "tickets.feedback.retract": ("delete", f"/api/tickets/{ticket.pk}/article-feedback/{article.pk}/", None),
        "deflect": ("post", "/api/deflect/", {"text": "my card was charged twice"}),
        "teams.list": ("get", "/api/teams/", None),
        "teams.detail": ("get", f"/api/teams/{team.pk}/", None),
        "articles.list": ("get", "/api/articles/", None),
        "articles.detail": ("get", f"/api/articles/{article.pk}/", None),
        "articles.create": ("post", "/api/articles/", {"title": "Refunds", "body": "How refunds work."}),
        "articles.update": ("patch", f"/api/articles/{article.pk}/", {"title": "Returns"}),
        "articles.delete": ("delete", f"/api/articles/{article.pk}/", None),
        "thresholds.list": ("get", "/api/thresholds/", None),
        "thresholds.update": ("patch", f"/api/thresholds/{team.pk}/", {"threshold": 0.7}),
        "models.list": ("get", "/api/model-versions/", None),
        "models.detail": ("get", f"/api/model-versions/{version.pk}/", None),
    }


AGENT_ENDPOINTS = {
    "tickets.list",
    "tickets.create",
    "tickets.detail",
    "tickets.correct",
    "tickets.accept",
    "tickets.tags",
    "tickets.feedback",
    "tickets.feedback.retract",
    "deflect",
    "teams.list",
    "teams.detail",
    "articles.list",
    "articles.detail",
}
ADMIN_ONLY = {
    "articles.create",
    "articles.update",
    "articles.delete",
    "thresholds.list",
    "thresholds.update",
    "models.list",
    "models.detail",
}
ALL = AGENT_ENDPOINTS | ADMIN_ONLY
INTAKE = {"tickets.create", "deflect"}  # what a portal or e-mail gateway does: send tickets, deflect them


@pytest.fixture
def world(ticket, teams, champion):
    article = Article.objects.create(title="Card payments", body="Cards are charged at checkout.")
    make_tag_sets()
    return requests(ticket, teams["billing"], article, champion)


def outcome(caller, method, path, body):
    return getattr(caller, method)(path, body).status_code


def assert_allowed(caller, world, names):
    for name in sorted(names):
        code = outcome(caller, *world[name])
        assert code not in (401, 403), f"{name} was refused ({code})"


def assert_refused(caller, world, names, code):
    for name in sorted(names):
        assert outcome(caller, *world[name]) == code, name


def test_anonymous_callers_are_refused_everywhere_with_401(anonymous, world):
    assert_refused(anonymous, world, ALL, 401)


def test_a_user_without_a_role_is_refused_everywhere_even_with_an_admin_token(outsider_api, world):
    assert_refused(outsider_api, world, ALL, 403)


def test_an_integration_token_may_only_create_tickets_and_ask_which_articles_answer_them(integration_api, world):
    assert_allowed(integration_api, world, INTAKE)
    assert_refused(integration_api, world, ALL - INTAKE, 403)


def test_an_agent_works_tickets_and_reads_the_knowledge_base_but_tunes_nothing(agent_api, world):
    assert_refused(agent_api, world, ADMIN_ONLY, 403)
    assert_allowed(agent_api, world, AGENT_ENDPOINTS)


def test_an_admin_may_call_every_endpoint(admin_api, world):
    assert_allowed(admin_api, world, ALL)


def test_an_admin_token_of_an_agent_grants_only_what_the_agent_has(agent_alice, world):
    caller = caller_for(agent_alice, ApiToken.Scope.ADMIN)
    assert_refused(caller, world, ADMIN_ONLY, 403)
    assert_allowed(caller, world, AGENT_ENDPOINTS)


def test_an_agent_token_of_an_admin_grants_only_agent_work(admin_ada, world):
    caller = caller_for(admin_ada, ApiToken.Scope.AGENT)
    assert_refused(caller, world, ADMIN_ONLY, 403)
    assert_allowed(caller, world, AGENT_ENDPOINTS)


def test_an_integration_token_of_an_admin_still_only_creates_tickets(admin_ada, world):
    caller = caller_for(admin_ada, ApiToken.Scope.INTEGRATION)
    assert_allowed(caller, world, INTAKE)
    assert_refused(caller, world, ALL - INTAKE, 403)


def test_a_logged_in_session_carries_the_dashboard_role(client, agent_alice, world):
    client.force_login(agent_alice)
    assert client.get("/api/tickets/").status_code == 200
    assert client.get("/api/thresholds/").status_code == 403
