from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from search.models import Article, Passage, Suggestion, SuggestionFeedback
from tests.api.conftest import decide
from triage.models import Correction, Prediction, Team, Ticket


def test_an_integration_creates_a_ticket_with_201(integration_api, integrator_ivan, db):
    response = integration_api.post(
        "/api/tickets/",
        {"subject": " Refund ", "body": "Please refund order 1234.", "requester": "pat@example.com"},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    ticket = Ticket.objects.get(pk=body["id"])
    assert (ticket.subject, ticket.channel, ticket.created_by) == ("Refund", "api", integrator_ivan)
    assert body["status"] == "new" and body["decision"] is None and body["team"] is None


def test_a_database_failing_while_the_answer_is_built_stores_nothing_so_a_retry_stores_it_once(agent_api, db):
    """The fault run caught this: Postgres dying after the ticket committed but before its answer was read
    back gave a 503, and the client's retry stored the ticket a second time. The answer is now built inside
    the ticket's transaction. Here the database fails on the first read after the insert."""
    from django.db import OperationalError, connection

    inserted = []

    def fail_after_insert(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("INSERT") and '"triage_ticket"' in sql:
            inserted.append(True)
        elif inserted and sql.lstrip().upper().startswith("SELECT"):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_after_insert):
        failed = agent_api.post("/api/tickets/", {"subject": "Refund", "body": "Please refund order 77."})
    assert inserted and failed.status_code == 503, failed.content
    assert failed.json()["code"] == "service_unavailable"
    assert not Ticket.objects.filter(subject="Refund").exists()

    retried = agent_api.post("/api/tickets/", {"subject": "Refund", "body": "Please refund order 77."})
    assert retried.status_code == 201
    assert Ticket.objects.filter(subject="Refund").count() == 1


def test_a_subjectless_chat_ticket_takes_its_first_line_as_subject(agent_api, db):
    response = agent_api.post("/api/tickets/", {"body": "Where is my parcel?\nOrdered last week.", "channel": "chat"})
    assert response.status_code == 201
    assert response.json()["subject"] == "Where is my parcel?"


def test_a_known_team_sent_with_a_ticket_is_stored_as_its_label(integration_api, teams):
    response = integration_api.post("/api/tickets/", {"body": "Invoice wrong", "team": "billing"})
    assert response.status_code == 201
    label = Correction.objects.get(ticket_id=response.json()["id"])
    assert label.to_team == teams["billing"]


def test_an_external_id_seen_before_returns_the_stored_ticket_with_200(integration_api, db):
    first = integration_api.post("/api/tickets/", {"body": "Parcel lost", "external_id": "zendesk-42"})
    again = integration_api.post("/api/tickets/", {"body": "Parcel lost (resent)", "external_id": "zendesk-42"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Ticket.objects.filter(external_id="zendesk-42").count() == 1


def test_the_list_filters_by_team_status_decision_and_date(agent_api, teams, champion):
    billing, shipping = teams["billing"], teams["shipping"]
    routed = Ticket.objects.create(subject="a", body="a", team=billing, status=Ticket.Status.ROUTED)
    decide(routed, billing, Prediction.Decision.AUTO_ROUTED, champion)
    waiting = Ticket.objects.create(subject="b", body="b", status=Ticket.Status.NEEDS_TRIAGE)
    decide(waiting, shipping, Prediction.Decision.ABSTAINED, champion, confidence=0.3)
    old = Ticket.objects.create(subject="c", body="c", team=shipping)
    Ticket.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))

    def ids(query):
        response = agent_api.get("/api/tickets/" + query)
        assert response.status_code == 200, response.json()
        return {t["id"] for t in response.json()["results"]}

    assert ids("") == {routed.pk, waiting.pk, old.pk}
    assert ids("?team=billing") == {routed.pk}
    assert ids(f"?team={shipping.pk}") == {old.pk}
    assert ids("?status=needs_triage") == {waiting.pk}
    assert ids("?decision=auto_routed") == {routed.pk}
    assert ids("?decision=abstained") == {waiting.pk}
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert ids(f"?created_after={since}") == {routed.pk, waiting.pk}
    assert ids(f"?created_before={since}") == {old.pk}


def test_the_list_refuses_unknown_filters_values_with_field_messages(agent_api, teams):
    response = agent_api.get("/api/tickets/?team=nope&status=lost&decision=maybe&created_after=yesterday")
    assert response.status_code == 400
    assert set(response.json()) == {"team", "status", "decision", "created_after"}


def test_the_list_is_paginated(agent_api, db):
    Ticket.objects.bulk_create([Ticket(subject=f"t{i}", body="x") for i in range(5)])
    page = agent_api.get("/api/tickets/?page_size=2").json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["next"]


def test_a_ticket_comes_with_its_prediction_suggestions_and_labels(agent_api, ticket, teams, champion):
    decide(ticket, teams["billing"], Prediction.Decision.SUGGESTED, champion, confidence=0.7)
    article = Article.objects.create(title="Declined cards", body="Why cards are declined.")
    passage = Passage.objects.create(
        article=article,
        position=0,
        text="Why cards are declined.",
        text_hash="h",
        embedding=[0.0] * 384,
        embedder_version="test",
    )
    Suggestion.objects.create(ticket=ticket, article=article, passage=passage, score=0.9, rank=1)
    body = agent_api.get(f"/api/tickets/{ticket.pk}/").json()
    assert body["decision"] == "suggested"
    assert body["prediction"]["chosen_team"]["slug"] == "billing"
    assert body["prediction"]["model_version"]["version"] == "zs-1"
    assert body["prediction"]["top"] == [{"team": "billing", "score": 0.7}]
    assert body["suggestions"] == [
        {
            "rank": 1,
            "score": 0.9,
            "article": {"id": article.pk, "title": "Declined cards", "url": ""},
            "passage": "Why cards are declined.",
        }
    ]
    assert body["labels"] == []


def test_an_unknown_ticket_is_404(agent_api, db):
    assert agent_api.get("/api/tickets/999999/").status_code == 404
    assert agent_api.get(f"/api/tickets/{2**70}/").status_code == 404


def test_accepting_a_suggestion_labels_and_routes_the_ticket(agent_api, agent_alice, ticket, teams, champion):
    prediction = decide(ticket, teams["billing"], Prediction.Decision.SUGGESTED, champion)
    response = agent_api.post(f"/api/tickets/{ticket.pk}/accept/")
    assert response.status_code == 201, response.json()
    label = Correction.objects.get(ticket=ticket)
    assert (label.kind, label.to_team, label.source, label.agent, label.prediction) == (
        "accepted",
        teams["billing"],
        "api",
        agent_alice,
        prediction,
    )
    ticket.refresh_from_db()
    assert (ticket.team, ticket.status) == (teams["billing"], Ticket.Status.ROUTED)


def test_accepting_without_any_routing_is_a_400(agent_api, ticket):
    response = agent_api.post(f"/api/tickets/{ticket.pk}/accept/")
    assert response.status_code == 400
    assert "team" in response.json()
    assert not Correction.objects.exists()


def test_a_correction_relabels_and_reroutes_the_ticket(agent_api, ticket, teams, champion):
    decide(ticket, teams["billing"], Prediction.Decision.ABSTAINED, champion, confidence=0.4)
    response = agent_api.post(f"/api/tickets/{ticket.pk}/correct/", {"team": teams["shipping"].pk})
    assert response.status_code == 201
    assert response.json()["kind"] == "corrected"
    assert response.json()["from_team"]["slug"] == "billing"
    assert response.json()["to_team"]["slug"] == "shipping"
    ticket.refresh_from_db()
    assert (ticket.team, ticket.status) == (teams["shipping"], Ticket.Status.ROUTED)


def test_article_feedback_is_stored_with_the_rank_it_was_shown_at(agent_api, agent_alice, ticket):
    article = Article.objects.create(title="Declined cards", body="Why cards are declined.")
    Suggestion.objects.create(ticket=ticket, article=article, score=0.9, rank=2)
    response = agent_api.post(f"/api/tickets/{ticket.pk}/article-feedback/", {"article": article.pk, "helpful": False})
    assert response.status_code == 201, response.json()
    feedback = SuggestionFeedback.objects.get()
    assert (feedback.helpful, feedback.rank, feedback.agent) == (False, 2, agent_alice)
    # The mark teaches the search a negative question of that article.
    assert (feedback.learned_question.helpful, feedback.learned_question.author) == (False, agent_alice)


def test_teams_are_listed_for_agents(agent_api, teams):
    body = agent_api.get("/api/teams/").json()
    assert [t["slug"] for t in body["results"]] == ["accounts", "billing", "shipping"]


def test_a_correction_to_an_inactive_team_is_refused(agent_api, ticket, teams):
    Team.objects.filter(slug="accounts").update(active=False)
    response = agent_api.post(f"/api/tickets/{ticket.pk}/correct/", {"team": "accounts"})
    assert response.status_code == 400 and "team" in response.json()
    assert not Correction.objects.exists()
