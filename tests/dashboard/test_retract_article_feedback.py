"""Withdrawing one's helpful / not-helpful mark from the ticket page: one button, the question it taught
goes with it, and the article's counts drop."""

from __future__ import annotations

from search.models import LearnedQuestion, SuggestionFeedback
from tests.dashboard.builders import make_suggestion, make_ticket


def test_a_marked_suggestion_offers_a_withdraw_button_reachable_by_keyboard(agent_client):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    page = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert 'data-action="retract-feedback"' not in page  # nothing to withdraw yet
    agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "yes"})
    page = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    # A <button> in the suggestion's form: focusable with Tab, pressed with Enter or Space.
    assert '<button type="submit" class="linklike small" data-action="retract-feedback"' in page
    assert f'href="/kb/articles/{suggestion.article_id}/"' in page


def test_withdrawing_deletes_the_mark_and_its_question_and_answers_the_suggestion_again(agent_client, agent_alice):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "no"})
    agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "yes"})
    assert LearnedQuestion.objects.filter(article=suggestion.article).count() == 1
    response = agent_client.post(
        f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/retract/", HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert body.lstrip().startswith(f'<li id="suggestion-{suggestion.pk}"')
    assert "You marked this" not in body and 'aria-pressed="true"' not in body
    assert response["HX-Trigger"] == "history-changed"
    assert not SuggestionFeedback.objects.exists() and not LearnedQuestion.objects.exists()
    counts = agent_client.get(f"/kb/articles/{suggestion.article_id}/").content.decode()
    assert 'data-testid="helpful-count">0<' in counts


def test_without_javascript_it_redirects_back_to_the_ticket(agent_client):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "yes"})
    response = agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/retract/")
    assert response.status_code == 302 and response["Location"] == f"/tickets/{ticket.pk}/"
    assert not SuggestionFeedback.objects.exists()


def test_it_withdraws_only_ones_own_mark(client, agent_alice, admin_ada):
    from search.services import record_suggestion_feedback

    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    record_suggestion_feedback(ticket, suggestion.article, helpful=True, agent=admin_ada)
    client.force_login(agent_alice)
    client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/retract/")
    assert SuggestionFeedback.objects.get().agent == admin_ada
    assert LearnedQuestion.objects.get().author == admin_ada


def test_a_suggestion_of_another_ticket_cannot_be_withdrawn_through_this_one_and_get_is_refused(agent_client):
    ticket, other = make_ticket(), make_ticket()
    suggestion = make_suggestion(other, "Track a parcel", "Use the tracking link.")
    assert agent_client.post(f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/retract/").status_code == 404
    assert agent_client.get(f"/tickets/{other.pk}/suggestions/{suggestion.pk}/feedback/retract/").status_code == 405


def test_deleting_a_ticket_in_the_admin_deletes_its_marks_and_questions(client, agent_alice):
    from django.contrib.auth.models import User

    from search.services import record_suggestion_feedback

    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    record_suggestion_feedback(ticket, suggestion.article, helpful=True, agent=agent_alice)
    keep = make_ticket(subject="Another", body="Where is my parcel?")
    record_suggestion_feedback(keep, suggestion.article, helpful=False, agent=agent_alice)
    root = User.objects.create_superuser("root", "root@example.com", "pw-root")
    client.force_login(root)
    response = client.post(f"/django-admin/triage/ticket/{ticket.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(LearnedQuestion.objects.values_list("ticket_id", flat=True)) == [keep.pk]
    assert list(SuggestionFeedback.objects.values_list("ticket_id", flat=True)) == [keep.pk]
