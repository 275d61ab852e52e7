"""The ticket page: the routing decision and how it was made, live updates while routing, suggestions
and the history of labels."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from search.models import Suggestion, SuggestionFeedback
from tests.dashboard.builders import decide, make_model_version, make_suggestion, make_ticket
from triage.models import Correction, Prediction, Ticket
from triage.services import record_label


def test_it_shows_the_decision_with_calibrated_confidence_kind_alternatives_scorer_and_version(agent_client, teams):
    ticket = make_ticket()
    version = make_model_version("zs-7", scorer="nli")
    decide(
        ticket,
        {"billing": 0.71, "returns": 0.18, "orders": 0.07, "account": 0.04},
        decision=Prediction.Decision.SUGGESTED,
        version=version,
        threshold=0.9,
    )
    body = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert 'data-testid="decision-kind">Suggested<' in body
    assert 'data-testid="decision-team">Billing &amp; Subscriptions<' in body
    assert 'data-testid="decision-confidence">71%<' in body
    assert "Decided by <strong>nli</strong>" in body and ">zs-7</strong>" in body
    assert "threshold 90%" in body
    # The top three, best first, with their scores; the fourth team is not offered as an alternative.
    alternatives = body[body.index('data-testid="alternatives"') :]
    alternatives = alternatives[: alternatives.index("</ol>")]
    assert [alternatives.index(name) for name in ("Billing", "Returns", "Orders")] == sorted(
        alternatives.index(name) for name in ("Billing", "Returns", "Orders")
    )
    assert "0.71" in alternatives and "0.18" in alternatives and "0.07" in alternatives
    assert "Account" not in alternatives
    for number in (1, 2, 3):
        assert f'data-shortcut="alt-{number}"' in alternatives


def test_each_decision_kind_has_its_own_label(agent_client, teams):
    labels = {
        Prediction.Decision.AUTO_ROUTED: "Auto-routed",
        Prediction.Decision.SUGGESTED: "Suggested",
        Prediction.Decision.ABSTAINED: "Needs triage",
    }
    for decision, label in labels.items():
        ticket = make_ticket()
        decide(ticket, {"billing": 0.6, "orders": 0.4}, decision=decision)
        body = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
        assert f'data-testid="decision-kind">{label}<' in body


def test_a_ticket_still_routing_shows_routing_and_polls_every_second(agent_client, teams):
    ticket = make_ticket(status=Ticket.Status.ROUTING)
    body = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert "Routing…" in body
    assert f'hx-get="/tickets/{ticket.pk}/decision/?was=pending"' in body
    assert 'hx-trigger="every 1s"' in body


def test_routing_that_takes_long_is_polled_less_often_and_says_so(agent_client, teams):
    ticket = make_ticket(status=Ticket.Status.ROUTING)
    Ticket.objects.filter(pk=ticket.pk).update(routing_started_at=timezone.now() - timedelta(minutes=2))
    body = agent_client.get(f"/tickets/{ticket.pk}/decision/?was=pending").content.decode()
    assert 'hx-trigger="every 5s"' in body
    assert "longer than usual" in body


def test_the_decision_part_stops_polling_and_tells_the_page_once_the_ticket_is_decided(agent_client, teams):
    ticket = make_ticket(status=Ticket.Status.ROUTING)
    pending = agent_client.get(f"/tickets/{ticket.pk}/decision/?was=pending", HTTP_HX_REQUEST="true")
    assert "HX-Trigger" not in pending
    decide(ticket, {"orders": 0.95}, decision=Prediction.Decision.AUTO_ROUTED)
    decided = agent_client.get(f"/tickets/{ticket.pk}/decision/?was=pending", HTTP_HX_REQUEST="true")
    body = decided.content.decode()
    assert decided["HX-Trigger"] == "ticket-decided"
    assert "every 1s" not in body and "hx-get" not in body.split(">", 1)[0]
    assert 'data-testid="decision-kind">Auto-routed<' in body


def test_it_lists_suggested_articles_with_title_matching_passage_and_score(agent_client, teams):
    ticket = make_ticket()
    make_suggestion(ticket, "Refund a duplicate charge", "If you were charged twice, we refund it.", rank=1, score=0.87)
    make_suggestion(ticket, "Update your card", "Open Settings > Payment.", rank=2, score=0.41)
    body = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert body.index("Refund a duplicate charge") < body.index("Update your card")
    assert "If you were charged twice, we refund it." in body
    assert "0.87" in body and "0.41" in body
    assert body.count('data-action="helpful"') == 2


def test_the_suggestions_part_keeps_asking_for_a_while_when_none_are_there_yet(agent_client):
    fresh = make_ticket()
    assert "every 2s" in agent_client.get(f"/tickets/{fresh.pk}/suggestions/").content.decode()
    old = make_ticket()
    Ticket.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    body = agent_client.get(f"/tickets/{old.pk}/suggestions/").content.decode()
    assert "every 2s" not in body
    assert "No articles suggested" in body


def test_the_history_shows_who_accepted_and_corrected_with_teams_model_version_and_prediction(
    agent_client, agent_alice, admin_ada, teams
):
    ticket = make_ticket()
    prediction = decide(ticket, {"billing": 0.7, "orders": 0.3}, version=make_model_version("zs-9"))
    record_label(ticket, teams["billing"], agent=agent_alice, kind=Correction.Kind.ACCEPTED, prediction=prediction)
    record_label(ticket, teams["orders"], agent=admin_ada, kind=Correction.Kind.CORRECTED, prediction=prediction)
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    SuggestionFeedback.objects.create(
        ticket=ticket, article=suggestion.article, suggestion=suggestion, rank=1, helpful=True, agent=agent_alice
    )
    history = " ".join(agent_client.get(f"/tickets/{ticket.pk}/history/").content.decode().split())
    assert "<strong>Accepted</strong> by alice: Billing &amp; Subscriptions" in history
    assert "<strong>Corrected</strong> by ada:" in history
    assert "Billing &amp; Subscriptions → Orders &amp; Delivery" in history
    assert f"answers prediction #{prediction.pk}" in history and "model nli:zs-9" in history
    assert "<strong>Helpful</strong> by alice: “Track a parcel”" in history
    # Newest first: the feedback, then the correction, then the acceptance, then the decision.
    order = [history.index(f"{kind}</strong>") for kind in ("Helpful", "Corrected", "Accepted", "Suggested")]
    assert order == sorted(order)


def test_a_missing_ticket_is_a_404(agent_client):
    assert agent_client.get("/tickets/999999/").status_code == 404


def test_refreshing_suggestions_queues_the_search_task_and_polls_until_new_ones_arrive(
    agent_client, django_capture_on_commit_callbacks
):
    from config.celery import app
    from tests.workers import purge_queues

    ticket = make_ticket()
    Ticket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - timedelta(hours=1))
    make_suggestion(ticket, "Old article", "Old passage.")
    purge_queues()
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post(f"/tickets/{ticket.pk}/suggestions/refresh/", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "Recomputing suggestions…" in body and "every 2s" in body
    since = re.search(r"since=([0-9.]+)", body).group(1)
    with app.connection_for_write() as conn:
        queued = conn.default_channel.client.lrange("inference", 0, -1)
    assert len(queued) == 1 and b"search.tasks.suggest_articles_task" in queued[0]
    purge_queues()
    # Still the old suggestions: keep polling. Once the workers stored new ones: stop.
    assert "every 2s" in agent_client.get(f"/tickets/{ticket.pk}/suggestions/?since={since}").content.decode()
    Suggestion.objects.filter(ticket=ticket).delete()
    make_suggestion(ticket, "New article", "New passage.")
    body = agent_client.get(f"/tickets/{ticket.pk}/suggestions/?since={since}").content.decode()
    assert "every 2s" not in body and "New article" in body


def test_the_ticket_page_takes_a_fixed_number_of_queries_however_long_its_history(
    agent_client, agent_alice, teams, django_assert_max_num_queries
):
    ticket = make_ticket()
    prediction = decide(ticket, {"billing": 0.7, "orders": 0.2, "account": 0.1})
    for n in range(5):
        suggestion = make_suggestion(ticket, f"Article {n}", f"Passage {n}.", rank=n + 1)
        SuggestionFeedback.objects.create(
            ticket=ticket, article=suggestion.article, suggestion=suggestion, helpful=True, agent=agent_alice
        )
    for team in ("orders", "billing", "account", "returns"):
        record_label(ticket, teams[team], agent=agent_alice, kind=Correction.Kind.CORRECTED, prediction=prediction)
    with django_assert_max_num_queries(20):
        response = agent_client.get(f"/tickets/{ticket.pk}/")
    assert response.status_code == 200
