from __future__ import annotations

import numpy as np
import pytest

from mlops.text import clean_ask, split_sentences
from search.models import LearnedQuestion, SuggestionFeedback
from search.questions import embed_learned_questions
from search.retrieval import feedback_scores, question_prototypes, search
from search.services import record_suggestion_feedback, retract_suggestion_feedback, upsert_article
from triage.models import Ticket

EMAIL = (
    "Refund for the renewal\n\nHi team,\n\nI hope you're all well. I was billed for the yearly renewal yesterday "
    "although I cancelled in March. Can I get that money back?\n\nMany thanks in advance,\nAnna Smith\n"
    "Office Manager | Smith & Co\nTel +44 20 7946 0000"
)


def ticket(subject: str, body: str, teams) -> Ticket:  # teams: the KB's articles reference them
    return Ticket.objects.create(subject=subject, body=body)


def test_the_ask_of_an_email_keeps_the_problem_and_drops_greeting_pleasantries_and_signature():
    ask = clean_ask(EMAIL)
    assert "renewal" in ask and "money back" in ask
    for noise in ("Hi team", "hope", "Many thanks", "Anna", "Office Manager", "Tel"):
        assert noise not in ask
    assert clean_ask("card declined abroad") == "card declined abroad"
    quoted = "Still broken\n\nIt still does not work.\n\nOn Mon, 1 Dec 2026, Support <help@x.com> wrote:\n> Restart it"
    assert clean_ask(quoted) == "Still broken It still does not work."
    # Nothing but a greeting: the text is kept rather than learning an empty question.
    assert clean_ask("Hello there!") == "Hello there!"


def test_the_ask_of_a_long_email_is_found_in_linear_time():
    import time

    # A "thanks" early on, then hundreds of words: a signature pattern that backtracks took minutes here.
    text = "Thanks for the reply. " + "The label printer stops after every parcel and I restart it. " * 60
    started = time.perf_counter()
    assert clean_ask(text).startswith("Thanks for the reply.")
    assert time.perf_counter() - started < 1.0


def test_a_helpful_mark_teaches_its_article_a_question_with_author_and_time(kb, teams, agent_alice, embedder):
    t = ticket("Refund for the renewal", EMAIL.split("\n\n", 1)[1], teams)
    mark = record_suggestion_feedback(t, kb["kb-refund"], helpful=True, agent=agent_alice)
    question = LearnedQuestion.objects.get()
    assert (question.article, question.ticket, question.feedback, question.helpful) == (kb["kb-refund"], t, mark, True)
    assert question.author == agent_alice and question.marked_at == mark.created_at
    assert "Anna" not in question.text and question.embedding is None  # embedded on the inference queue
    assert question.article_hash == kb["kb-refund"].content_hash and not question.article_edited

    assert embed_learned_questions(embedder=embedder) == 1
    question.refresh_from_db()
    assert question.embedder_version == embedder.version and len(question.embedding) == 384
    assert embed_learned_questions(embedder=embedder) == 0  # nothing left to embed


def test_a_learned_question_lifts_its_article_for_a_similar_ticket_and_not_for_the_one_it_came_from(
    kb, teams, agent_alice, embedder
):
    # Worded so that nothing in the article's text matches it: only the learned question can.
    taught = ticket("Money for the yearly plan", "Why did you take 99 euros off me again, I quit last spring", teams)
    record_suggestion_feedback(taught, kb["kb-refund"], helpful=True, agent=agent_alice)
    embed_learned_questions(embedder=embedder)
    query = "you took 99 euros from me again for the yearly plan although I quit"
    refund = kb["kb-refund"].pk

    before = search(query, embedder=embedder, rerank_depth=0, exclude_ticket=taught.pk)
    after = search(query, embedder=embedder, rerank_depth=0)
    assert before.stage_scores["feedback"] == before.stage_scores["dense"]
    assert after.stage_scores["feedback"][refund] > before.stage_scores["dense"][refund] + 0.1
    assert after.stage_scores["dense"] == before.stage_scores["dense"]


def test_a_not_helpful_mark_lowers_its_article_for_similar_tickets(kb, teams, agent_alice, embedder):
    wrong = ticket("Track my parcel", "Where is my parcel, the tracking number shows nothing", teams)
    record_suggestion_feedback(wrong, kb["kb-password"], helpful=False, agent=agent_alice)
    embed_learned_questions(embedder=embedder)
    result = search("where is my parcel, tracking shows nothing", embedder=embedder, rerank_depth=0)
    password = kb["kb-password"].pk
    assert result.stage_scores["feedback"][password] < result.stage_scores["dense"][password]
    # The rule itself: a question closer to the ticket than the article pushes the article down by the gap.
    assert feedback_scores({1: 0.4}, {}, [(1, False, 0.9)]) == {1: pytest.approx(-0.1)}
    assert feedback_scores({1: 0.4}, {}, [(1, False, 0.3)]) == {1: 0.4}


def test_retracting_a_mark_deletes_its_question_and_a_new_mark_replaces_the_agents_earlier_one(
    kb, teams, agent_alice, admin_ada
):
    t = ticket("Refund", "I want my renewal refunded", teams)
    record_suggestion_feedback(t, kb["kb-refund"], helpful=False, agent=agent_alice)
    record_suggestion_feedback(t, kb["kb-refund"], helpful=True, agent=agent_alice)
    record_suggestion_feedback(t, kb["kb-refund"], helpful=True, agent=admin_ada)
    assert SuggestionFeedback.objects.count() == 3  # the history of marks stays
    assert sorted(LearnedQuestion.objects.values_list("author__username", "helpful")) == [
        (admin_ada.username, True),
        (agent_alice.username, True),
    ]
    assert retract_suggestion_feedback(t, kb["kb-refund"], agent=agent_alice) == 2
    assert list(LearnedQuestion.objects.values_list("author", flat=True)) == [admin_ada.pk]
    assert retract_suggestion_feedback(t, kb["kb-refund"], agent=agent_alice) == 0


def test_deleting_the_ticket_deletes_its_questions_and_editing_the_article_flags_them(kb, teams, agent_alice):
    t = ticket("Refund", "I want my renewal refunded", teams)
    other = ticket("Password", "The reset link never came", teams)
    record_suggestion_feedback(t, kb["kb-refund"], helpful=True, agent=agent_alice)
    record_suggestion_feedback(other, kb["kb-password"], helpful=True, agent=agent_alice)

    upsert_article({"title": kb["kb-refund"].title, "body": "Refunds take 30 days now."}, article=kb["kb-refund"])
    edited = LearnedQuestion.objects.get(article=kb["kb-refund"])
    kb["kb-refund"].refresh_from_db()
    assert edited.article_edited and edited.article_hash != kb["kb-refund"].content_hash
    upsert_article({"published": False}, article=kb["kb-password"])  # not a content change
    assert not LearnedQuestion.objects.get(article=kb["kb-password"]).article_edited

    t.delete()
    assert list(LearnedQuestion.objects.values_list("ticket", flat=True)) == [other.pk]


def test_marks_through_the_api_and_the_dashboard_teach_questions(kb, teams, agent_client, agent_alice):
    from search.models import Suggestion

    t = ticket("Refund", "I want my renewal refunded", teams)
    suggestion = Suggestion.objects.create(ticket=t, article=kb["kb-refund"], score=1.0, rank=1)
    response = agent_client.post(f"/tickets/{t.pk}/suggestions/{suggestion.pk}/feedback/", {"helpful": "yes"})
    assert response.status_code in (200, 302)
    assert LearnedQuestion.objects.get().author == agent_alice


LONG_EMAIL = (
    "Label printer is slow\n\nHi there,\n\nI hope you are well and had a lovely weekend. Our label printer takes "
    "twenty seconds for every label since Friday. We print from the warehouse PC over USB. Restarting the computer "
    "did not change anything. The weather here has been awful all week. Is there a setting that makes it fast "
    "again?\n\nMany thanks,\nOwen Pritchard\nOperations, Bramble & Birch Yarns Ltd\nTel. 01422 553 910"
)


def test_a_marked_long_email_is_learned_as_its_ask_sentences_without_greeting_or_signature(
    kb, teams, agent_alice, embedder
):
    t = ticket("Label printer is slow", LONG_EMAIL.split("\n\n", 1)[1], teams)
    record_suggestion_feedback(t, kb["kb-offline"], helpful=True, agent=agent_alice)
    embed_learned_questions(embedder=embedder)
    question = LearnedQuestion.objects.get()
    for noise in ("Hi there", "hope you are well", "Many thanks", "Owen", "Bramble", "01422"):
        assert noise not in question.text
    # A long ask is cut to 3 of its own sentences (those nearest the article); that text is what is embedded.
    ask = split_sentences(clean_ask(question.source_text))
    assert len(ask) > 3 and "twenty seconds" in " ".join(ask)
    kept = split_sentences(question.text)
    assert len(kept) == 3 and set(kept) <= set(ask)
    assert np.allclose(question.embedding, embedder.encode([question.text])[0], atol=1e-5)


def test_an_articles_marks_vote_through_their_mean_and_a_retracted_mark_stops_counting(
    kb, teams, agent_alice, admin_ada, embedder
):
    refund = kb["kb-refund"]
    first = ticket("Money for the yearly plan", "Why did you take 99 euros off me again, I quit last spring", teams)
    second = ticket("Charged twice", "My card shows two payments for the same month, please return one", teams)
    record_suggestion_feedback(first, refund, helpful=True, agent=agent_alice)
    record_suggestion_feedback(second, refund, helpful=True, agent=admin_ada)
    embed_learned_questions(embedder=embedder)
    vectors = {
        q.ticket_id: np.asarray(q.embedding, dtype=np.float64) for q in LearnedQuestion.objects.filter(article=refund)
    }
    query = embedder.encode(["you took 99 euros from me again for the yearly plan although I quit"])[0]

    def cosine(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    both = question_prototypes(query, [refund.pk, kb["kb-password"].pk], embedder.version)
    assert list(both) == [refund.pk]  # an article without helpful questions has no prototype
    assert both[refund.pk] == pytest.approx(cosine(query, vectors[first.pk] + vectors[second.pk]), abs=1e-5)
    # The mean, not the nearest mark: the marked ticket worded like the query counts for half.
    assert both[refund.pk] < cosine(query, vectors[first.pk]) - 0.01
    # A ticket's own marks are not read for it.
    alone = question_prototypes(query, [refund.pk], embedder.version, exclude_ticket=first.pk)
    assert alone[refund.pk] == pytest.approx(cosine(query, vectors[second.pk]), abs=1e-5)

    assert retract_suggestion_feedback(second, refund, agent=admin_ada) == 1
    after = question_prototypes(query, [refund.pk], embedder.version)
    assert after[refund.pk] == pytest.approx(cosine(query, vectors[first.pk]), abs=1e-5)
    second.refresh_from_db()
    record_suggestion_feedback(second, refund, helpful=False, agent=admin_ada)  # a negative is not in the mean
    embed_learned_questions(embedder=embedder)
    assert question_prototypes(query, [refund.pk], embedder.version) == pytest.approx(after, abs=1e-6)
    first.delete()
    assert question_prototypes(query, [refund.pk], embedder.version) == {}
