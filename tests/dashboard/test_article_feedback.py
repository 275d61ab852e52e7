"""Helpful / not helpful on suggested articles: stored like routing labels, shown in the history."""

from __future__ import annotations

from search.models import Suggestion, SuggestionFeedback
from tests.dashboard.builders import make_suggestion, make_ticket


def test_marking_a_suggestion_helpful_stores_agent_article_rank_and_time(agent_client, agent_alice):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.", rank=2)
    response = agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "yes"})
    assert response.status_code == 302
    mark = SuggestionFeedback.objects.get()
    assert (mark.ticket, mark.article, mark.suggestion, mark.rank) == (ticket, suggestion.article, suggestion, 2)
    assert (mark.helpful, mark.agent) == (True, agent_alice)
    assert mark.created_at is not None


def test_with_htmx_it_answers_with_the_updated_suggestion_and_refreshes_the_history(agent_client):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    response = agent_client.post(
        f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "no"}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert body.lstrip().startswith(f'<li id="suggestion-{suggestion.pk}"')
    assert "You marked this not helpful." in body
    assert response["HX-Trigger"] == "history-changed"
    assert SuggestionFeedback.objects.get().helpful is False


def test_changing_ones_mind_keeps_both_marks_and_shows_the_latest(agent_client):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    url = f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/"
    agent_client.post(url, {"helpful": "no"})
    agent_client.post(url, {"helpful": "yes"})
    assert [m.helpful for m in SuggestionFeedback.objects.order_by("created_at")] == [False, True]
    assert "You marked this helpful." in agent_client.get(f"/tickets/{ticket.pk}/").content.decode()


def test_a_suggestion_of_another_ticket_cannot_be_marked_through_this_one(agent_client):
    ticket, other = make_ticket(), make_ticket()
    suggestion = make_suggestion(other, "Track a parcel", "Use the tracking link.")
    response = agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "yes"})
    assert response.status_code == 404
    assert not SuggestionFeedback.objects.exists()


def test_anything_but_yes_or_no_is_refused(agent_client):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    response = agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "maybe"})
    assert response.status_code == 400
    assert not SuggestionFeedback.objects.exists()


def test_the_mark_survives_the_suggestions_being_recomputed(agent_client, agent_alice):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "yes"})
    # Recomputing replaces the Suggestion rows; the mark belongs to the ticket and the article.
    article = suggestion.article
    suggestion.delete()
    Suggestion.objects.create(ticket=ticket, article=article, passage_text="Use the tracking link.", score=0.9, rank=1)
    assert "You marked this helpful." in agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert SuggestionFeedback.objects.get().article == article
