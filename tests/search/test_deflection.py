"""Deflection: articles for a ticket still being typed, from the served retrieval without the reranker, with
the relevance cutoff; the new-ticket form's live box (an htmx partial) and who may ask for it."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from search.deflection import deflect
from search.relevance import load_relevance_model
from search.services import upsert_article

REFUND = "I was charged for a renewal I did not want, can I get my money back"
UNRELATED = "what is the capital of australia and how many people live there"


def test_a_partial_question_finds_the_article_that_answers_it_with_its_probability(kb):
    result = deflect(REFUND)
    assert [a.title for a in result.articles][0] == "Request a refund for a subscription charge"
    first = result.articles[0]
    assert first.url == "" and "14 days" in first.excerpt and not first.excerpt.startswith("Request a refund")
    assert first.relevance >= load_relevance_model().cutoff
    assert not result.no_article_fits


def test_every_article_returned_reaches_the_cutoff_and_text_about_nothing_in_the_help_centre_gets_none(kb):
    cutoff = load_relevance_model().cutoff
    for text in (REFUND, "forgot my password", "camera is offline, orange light", UNRELATED):
        assert all(a.relevance >= cutoff for a in deflect(text).articles)
    nothing = deflect(UNRELATED)
    assert nothing.articles == [] and nothing.no_article_fits


def test_it_never_runs_the_reranker_whatever_the_setting(kb, settings):
    settings.SEARCH_RERANK = "all"
    result = deflect(REFUND)
    assert "rerank" not in result.timings_ms and "embed" in result.timings_ms


def test_it_learns_from_marks_like_the_ticket_page(kb, teams, agent_alice, embedder):
    """A helpful mark teaches the same retrieval: a question worded unlike any article, no fit before the
    mark, finds the article once another ticket like it was marked helpful."""
    from search.questions import embed_learned_questions
    from search.services import record_suggestion_feedback
    from triage.models import Ticket

    typed = "my doorbell light has been blinking amber all weekend"
    before = deflect(typed)
    assert before.articles == [] and before.no_article_fits
    marked = Ticket.objects.create(
        subject="doorbell flashing amber",
        body="the little light on my doorbell thing keeps flashing amber since the weekend",
    )
    record_suggestion_feedback(marked, kb["kb-offline"], helpful=True, agent=agent_alice)
    assert embed_learned_questions(embedder=embedder) == 1
    after = deflect(typed)
    assert [a.article_id for a in after.articles][:1] == [kb["kb-offline"].pk]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "must be text"),
        (12, "must be text"),
        ("", "is blank"),
        ("   \n ", "is blank"),
        ("x" * 4001, "the limit is 4,000"),
        ("refund\x00please", "NUL"),
        ("refund \ud800 please", "not valid Unicode"),
    ],
)
def test_bad_text_is_refused_with_the_reason(db, text, says):
    with pytest.raises(ValidationError) as error:
        deflect(text)
    assert says in " ".join(error.value.message_dict["text"])


def test_limit_is_capped(kb):
    assert len(deflect("refund password offline order tracking", limit=2).articles) <= 2
    assert len(deflect("refund password offline order tracking", limit=500).articles) <= 10


# --- The live box on the new-ticket form ---------------------------------------------------------------


def test_the_new_ticket_form_has_a_debounced_live_box(agent_client):
    page = agent_client.get("/tickets/new/").content.decode()
    assert 'hx-post="/kb/deflect/"' in page
    assert "input changed delay:300ms from:#id_body" in page and 'hx-include="#id_subject, #id_body"' in page
    assert 'data-testid="deflection-waiting"' in page


def test_the_box_shows_the_fitting_articles_for_what_is_typed(agent_client, kb):
    response = agent_client.post(
        "/kb/deflect/",
        {"subject": "renewal refund", "body": "charged for a renewal I did not want"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="deflection-articles"' in body
    titles = [line for line in body.splitlines() if 'class="title"' in line]
    assert "Request a refund for a subscription charge" in titles[0]
    assert "<html" not in body  # a partial


def test_the_box_says_no_article_fits_and_waits_for_a_few_words(agent_client, kb):
    none = agent_client.post("/kb/deflect/", {"subject": "", "body": UNRELATED}).content.decode()
    assert 'data-testid="deflection-none"' in none and "No article fits" in none
    waiting = agent_client.post("/kb/deflect/", {"subject": "refund", "body": ""}).content.decode()
    assert 'data-testid="deflection-waiting"' in waiting


def test_a_message_longer_than_the_limit_is_read_from_its_start(agent_client, kb, settings):
    settings.SEARCH_DEFLECT_MAX_CHARS = 200
    body = "charged for a renewal I did not want, refund please. " + "lorem ipsum " * 5000
    response = agent_client.post("/kb/deflect/", {"subject": "", "body": body})
    assert response.status_code == 200
    assert "Request a refund for a subscription charge" in response.content.decode()


def test_article_text_is_escaped_in_the_box(agent_client, kb, embedder):
    from search.indexing import index_article

    article, _ = upsert_article(
        {
            "title": 'Refunds <img src=x onerror="alert(1)"> & <script>alert(2)</script>',
            "body": "Refund a renewal charge: ask within 14 days. <b>bold</b>",
            "format": "text",
        },
        index=False,
    )
    assert index_article(article.pk, embedder=embedder) == "indexed"
    body = agent_client.post("/kb/deflect/", {"subject": "refund a renewal charge", "body": "within 14 days"}).content
    body = body.decode()
    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in body and "&lt;img" in body


def test_the_box_is_for_those_who_may_use_the_form(client, outsider_olga, kb):
    assert client.post("/kb/deflect/", {"body": REFUND}).status_code == 302  # to the login page
    client.force_login(outsider_olga)
    assert client.post("/kb/deflect/", {"body": REFUND}).status_code == 403


def test_the_box_answers_posts_only(agent_client):
    assert agent_client.get("/kb/deflect/?body=refund").status_code == 405
