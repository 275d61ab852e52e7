"""An article's "how it's found" page: its learned questions (author, time, flagged when the article
changed), the marks in force, the tickets it was suggested for (paginated), in a fixed number of queries."""

from __future__ import annotations

import hashlib

from django.contrib.auth.models import User

from search.models import Article, LearnedQuestion, Suggestion, SuggestionFeedback
from search.services import record_suggestion_feedback, upsert_article
from triage.models import Ticket


def article(title: str = "Track your order") -> Article:
    return Article.objects.create(
        title=title, body="Every order gets a tracking number.", content_hash=hashlib.sha256(title.encode()).hexdigest()
    )


def suggested(art: Article, n: int, *, agents: list[User] = ()) -> list[Ticket]:
    """``n`` tickets the article was suggested for, each marked by every one of ``agents`` (alternately
    helpful and not)."""
    tickets = []
    for i in range(n):
        ticket = Ticket.objects.create(subject=f"Where is order {i}?", body=f"Order {i} has not arrived <b>yet</b>.")
        Suggestion.objects.create(ticket=ticket, article=art, score=1.0, rank=1 + i % 5, relevance=0.7, fits=True)
        for agent in agents:
            record_suggestion_feedback(ticket, art, helpful=i % 2 == 0, agent=agent)
        tickets.append(ticket)
    return tickets


def test_it_shows_questions_marks_and_tickets_with_links(admin_client_ada, admin_ada, agent_alice):
    art = article()
    tickets = suggested(art, 3, agents=[agent_alice])
    page = admin_client_ada.get(f"/kb/articles/{art.pk}/").content.decode()
    assert 'data-testid="helpful-count">2<' in page and 'data-testid="not-helpful-count">1<' in page
    assert page.count('data-testid="learned-question"') == 3 and page.count('data-testid="suggested-ticket"') == 3
    assert "alice" in page and f'href="/tickets/{tickets[0].pk}/"' in page
    assert "Order 0 has not arrived &lt;b&gt;yet&lt;/b&gt;." in page  # ticket text escaped
    assert f'href="/django-admin/search/article/{art.pk}/change/"' in page
    assert page.count('data-action="retract-mark"') == 3


def test_a_changed_mind_counts_once_and_an_edited_article_flags_its_questions(admin_client_ada, agent_alice):
    art, _ = upsert_article({"title": "Track your order", "body": "Tracking numbers arrive by email."}, index=False)
    ticket = suggested(art, 1)[0]
    record_suggestion_feedback(ticket, art, helpful=False, agent=agent_alice)
    record_suggestion_feedback(ticket, art, helpful=True, agent=agent_alice)
    page = admin_client_ada.get(f"/kb/articles/{art.pk}/").content.decode()
    assert 'data-testid="helpful-count">1<' in page and 'data-testid="not-helpful-count">0<' in page
    assert 'data-testid="article-edited"' not in page
    upsert_article({"title": "Track your order", "body": "Tracking numbers arrive by SMS now."}, article=art)
    page = admin_client_ada.get(f"/kb/articles/{art.pk}/").content.decode()
    assert 'data-testid="article-edited"' in page  # the question stays, flagged for review


def test_agents_read_it_without_withdraw_buttons_and_others_are_refused(client, agent_alice, outsider_olga):
    art = article()
    suggested(art, 1, agents=[agent_alice])
    client.force_login(agent_alice)
    page = client.get(f"/kb/articles/{art.pk}/").content.decode()
    assert 'data-testid="learned-question"' in page
    assert 'data-action="retract-mark"' not in page and "/django-admin/" not in page
    mark = SuggestionFeedback.objects.get()
    assert client.post(f"/kb/articles/{art.pk}/marks/{mark.pk}/retract/").status_code == 403
    client.force_login(outsider_olga)
    assert client.get(f"/kb/articles/{art.pk}/").status_code == 403
    assert client.get("/kb/articles/999999/").status_code == 403  # no role: refused before the lookup


def test_an_admin_withdraws_any_mark_there_and_the_counts_update(admin_client_ada, agent_alice):
    art = article()
    suggested(art, 2, agents=[agent_alice])
    mark = SuggestionFeedback.objects.filter(helpful=True).get()
    response = admin_client_ada.post(f"/kb/articles/{art.pk}/marks/{mark.pk}/retract/", follow=True)
    page = response.content.decode()
    assert 'data-testid="helpful-count">0<' in page and 'data-testid="not-helpful-count">1<' in page
    assert not LearnedQuestion.objects.filter(feedback_id=mark.pk).exists()
    again = admin_client_ada.post(f"/kb/articles/{art.pk}/marks/{mark.pk}/retract/", follow=True)
    assert "already withdrawn" in again.content.decode()
    other = article("Returns")
    kept = SuggestionFeedback.objects.get()
    admin_client_ada.post(f"/kb/articles/{other.pk}/marks/{kept.pk}/retract/")  # not this article's mark
    assert SuggestionFeedback.objects.filter(pk=kept.pk).exists()


def test_tickets_and_questions_are_paginated(admin_client_ada, agent_alice):
    art = article()
    suggested(art, 30, agents=[agent_alice])
    first = admin_client_ada.get(f"/kb/articles/{art.pk}/").content.decode()
    assert first.count('data-testid="suggested-ticket"') == 25 and first.count('data-testid="learned-question"') == 25
    second = admin_client_ada.get(f"/kb/articles/{art.pk}/?page=2&questions=2").content.decode()
    assert second.count('data-testid="suggested-ticket"') == 5 and second.count('data-testid="learned-question"') == 5
    assert admin_client_ada.get(f"/kb/articles/{art.pk}/?page=abc&questions=-3").status_code == 200


def test_the_number_of_queries_does_not_grow_with_the_rows(admin_client_ada, agent_alice, admin_ada,
                                                           django_assert_max_num_queries):  # fmt: skip
    def own(queries) -> int:
        """The page's own queries (the knowledge base's tables), not the session's or the status line's,
        which the base template caches for a while."""
        return sum("search_" in q["sql"] for q in queries)

    art = article()
    suggested(art, 2, agents=[agent_alice])
    with django_assert_max_num_queries(16) as few:
        assert admin_client_ada.get(f"/kb/articles/{art.pk}/").status_code == 200
    suggested(art, 40, agents=[agent_alice, admin_ada])
    with django_assert_max_num_queries(16) as many:
        page = admin_client_ada.get(f"/kb/articles/{art.pk}/").content.decode()
    assert page.count('data-testid="suggested-ticket"') == 25
    assert own(many.captured_queries) == own(few.captured_queries) == 7
