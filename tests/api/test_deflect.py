"""POST /api/deflect/: the articles that fit a ticket still being written, for portals; and withdrawing a
mark through the API (DELETE /api/tickets/{id}/article-feedback/{article}/)."""

from __future__ import annotations

import pytest

from search.models import LearnedQuestion, SuggestionFeedback
from search.relevance import load_relevance_model
from tests.search.conftest import embedder, store_kb  # noqa: F401  (the session's packaged embedder)
from triage.models import Ticket


@pytest.fixture
def kb(db, embedder):  # noqa: F811
    return store_kb(embedder)


def test_a_portal_gets_the_fitting_articles_with_their_probability(integration_api, kb):
    response = integration_api.post("/api/deflect/", {"text": "forgot my password, the reset email never came"})
    assert response.status_code == 200
    body = response.json()
    assert body["no_article_fits"] is False
    first = body["articles"][0]
    assert (first["id"], first["title"]) == (kb["kb-password"].pk, "Reset your password")
    assert set(first) == {"id", "title", "url", "excerpt", "score", "relevance"}
    assert all(a["relevance"] >= load_relevance_model().cutoff for a in body["articles"])


def test_text_about_nothing_in_the_help_centre_gets_no_article(agent_api, kb):
    body = agent_api.post("/api/deflect/", {"text": "what is the capital of australia", "limit": 3}).json()
    assert body == {"articles": [], "no_article_fits": True}


def test_limit_caps_the_answer(agent_api, kb):
    body = agent_api.post("/api/deflect/", {"text": "refund password camera offline tracking", "limit": 1}).json()
    assert len(body["articles"]) <= 1


@pytest.mark.parametrize(
    ("payload", "field", "says"),
    [
        ({}, "text", "required"),
        ({"text": 12}, "text", "Not a valid string"),
        ({"text": None}, "text", "may not be null"),
        ({"text": ""}, "text", "may not be blank"),
        ({"text": "   "}, "text", "is blank"),
        ({"text": "x" * 4001}, "text", "the limit is 4,000"),
        ({"text": "refund\x00"}, "text", "Null characters are not allowed"),
        ({"text": "refund", "limit": "3"}, "limit", "valid integer"),
        ({"text": "refund", "limit": 0}, "limit", "greater than or equal to 1"),
        ({"text": "refund", "limit": 11}, "limit", "less than or equal to 10"),
        ({"text": "refund", "limit": True}, "limit", "valid integer"),
    ],
)
def test_bad_input_is_a_400_saying_what_is_wrong(agent_api, db, payload, field, says):
    response = agent_api.post("/api/deflect/", payload)
    assert response.status_code == 400, response.content
    assert says in " ".join(response.json()[field])


def test_a_body_that_is_not_json_is_a_400(agent_api, db):
    response = agent_api.post("/api/deflect/", "text=refund", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_only_post_is_answered(agent_api, db):
    assert agent_api.get("/api/deflect/").status_code == 405


# --- Withdrawing a mark ----------------------------------------------------------------------------------


def test_withdrawing_a_mark_deletes_it_and_its_question(agent_api, agent_alice, admin_ada, kb):
    from search.services import record_suggestion_feedback

    ticket = Ticket.objects.create(subject="refund", body="charged for a renewal I did not want")
    refund = kb["kb-refund"]
    mine = agent_api.post(f"/api/tickets/{ticket.pk}/article-feedback/", {"article": refund.pk, "helpful": True})
    assert mine.status_code == 201
    record_suggestion_feedback(ticket, refund, helpful=True, agent=admin_ada)  # another agent's mark stays
    assert LearnedQuestion.objects.filter(article=refund).count() == 2

    response = agent_api.delete(f"/api/tickets/{ticket.pk}/article-feedback/{refund.pk}/")
    assert response.status_code == 204
    assert not SuggestionFeedback.objects.filter(agent=agent_alice).exists()
    assert list(LearnedQuestion.objects.filter(article=refund).values_list("author", flat=True)) == [admin_ada.pk]

    again = agent_api.delete(f"/api/tickets/{ticket.pk}/article-feedback/{refund.pk}/")
    assert again.status_code == 404 and "no mark" in again.json()["detail"]


def test_withdrawing_from_an_unknown_ticket_or_article_is_a_404(agent_api, kb):
    ticket = Ticket.objects.create(subject="refund", body="money back please")
    assert agent_api.delete(f"/api/tickets/{ticket.pk}/article-feedback/999999/").status_code == 404
    assert agent_api.delete(f"/api/tickets/{ticket.pk}/article-feedback/{'9' * 40}/").status_code == 404
    assert agent_api.delete(f"/api/tickets/999999/article-feedback/{kb['kb-refund'].pk}/").status_code == 404
