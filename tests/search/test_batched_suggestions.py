"""Suggestions for many tickets in one pass (``suggest_for_tickets``, ``search_many``): one embedder and
one cross-encoder call for the batch, and the suggestions each ticket gets alone."""

from __future__ import annotations

import pytest
from django.utils import timezone

from search.models import Suggestion
from search.retrieval import search_many
from search.services import suggest_for_ticket, suggest_for_tickets
from search.tasks import suggest_articles_task
from triage.models import Ticket, TicketJob

TEXTS = [
    ("refund", "money back for the renewal please"),
    ("Reset", "Hi,\n\nI forgot my password and the reset email never arrives.\n\nThanks, Sam"),
    ("camera offline", "the orange light blinks and the app says offline"),
    ("where is my order", "tracking has said label created for a week"),
    ("hello", "?"),
]


def tickets() -> list[Ticket]:
    return [Ticket.objects.create(subject=s, body=b) for s, b in TEXTS]


def shown(rows: list[Suggestion]) -> list[tuple]:
    return [(r.rank, r.article_id, r.passage_id, r.fits) for r in rows]


@pytest.mark.parametrize("rerank_depth", [0, 5])
def test_a_batch_stores_the_suggestions_each_ticket_gets_alone(kb, rerank_depth):
    alone = tickets()
    together = tickets()
    singles = [suggest_for_ticket(t, search_kwargs={"rerank_depth": rerank_depth}) for t in alone]
    batch = suggest_for_tickets(together, search_kwargs={"rerank_depth": rerank_depth})
    assert list(batch) == [t.pk for t in together]
    for one, many in zip(singles, batch.values(), strict=True):
        assert shown(many) == shown(one) and one
        for a, b in zip(one, many, strict=True):
            assert b.score == pytest.approx(a.score, abs=1e-5)
            assert (b.relevance or 0.0) == pytest.approx(a.relevance or 0.0, abs=1e-5)
            assert (b.stage_scores["rerank"] is None) == (a.stage_scores["rerank"] is None)
            if a.stage_scores["rerank"] is not None:
                assert b.stage_scores["rerank"] == pytest.approx(a.stage_scores["rerank"], abs=1e-3)
            assert b.stage_scores.get("reranker") == a.stage_scores.get("reranker")


def test_the_models_are_called_once_for_the_whole_batch(kb, counting_embedder, cross_encoder):
    class CountingCrossEncoder:
        version = cross_encoder.version

        def __init__(self) -> None:
            self.calls: list[int] = []

        def predict(self, pairs, batch_size: int = 32):
            self.calls.append(len(pairs))
            return cross_encoder.predict(pairs, batch_size=batch_size)

    counting_ce = CountingCrossEncoder()
    queries = [f"{s}\n\n{b}" for s, b in TEXTS[:4]]
    results = search_many(queries, rerank_depth=3, embedder=counting_embedder, cross_encoder=counting_ce)
    assert len(results) == 4
    # Each query and, where it differs, its ask: one call's worth of texts, and one cross-encoder call.
    assert 4 <= len(counting_embedder.texts) <= 8
    assert counting_ce.calls == [sum(min(3, len(r.stage_scores["hybrid"])) for r in results)]
    assert all("rerank" in r.timings_ms for r in results)


def test_one_suggestion_task_serves_the_waiting_jobs_and_skips_deleted_tickets(kb, settings):
    settings.TRIAGE_INFERENCE_BATCH_SIZE = 10
    batch = tickets()
    for t in batch:
        TicketJob.objects.create(ticket=t, kind="suggest", requested_at=timezone.now())
    gone = batch.pop()
    gone.delete()
    stored = suggest_articles_task.apply(args=[batch[1].pk]).get()
    assert stored == Suggestion.objects.count() > 0
    assert set(Suggestion.objects.values_list("ticket_id", flat=True)) == {t.pk for t in batch}
    assert not TicketJob.objects.filter(done_at__isnull=True).exists()
    assert suggest_articles_task.apply(args=[batch[0].pk]).get() == 0  # done by the batch: nothing to do


def test_a_bug_on_one_ticket_of_a_batch_leaves_only_that_ticket_to_the_sweeper(kb, settings, monkeypatch):
    """``triage.work.run_batch``'s rules for a kind without a give-up: the batch is run again one ticket
    at a time; the ticket that fails alone has its job given back (open, unclaimed: the sweeper sends it
    again), the others get their suggestions and are done."""
    from search import services

    settings.TRIAGE_INFERENCE_BATCH_SIZE = 10
    batch = tickets()[:4]
    for t in batch:
        TicketJob.objects.create(ticket=t, kind="suggest", requested_at=timezone.now())
    real = services.suggest_for_tickets
    broken = batch[2].pk

    def breaks_on_one(ticket_ids, **kwargs):
        if broken in [getattr(t, "pk", t) for t in ticket_ids]:
            raise ZeroDivisionError("a bug this ticket's text triggers")
        return real(ticket_ids, **kwargs)

    monkeypatch.setattr(services, "suggest_for_tickets", breaks_on_one)
    stored = suggest_articles_task.apply(args=[batch[0].pk]).get()
    assert stored == Suggestion.objects.count() > 0
    assert set(Suggestion.objects.values_list("ticket_id", flat=True)) == {t.pk for t in batch} - {broken}
    left = TicketJob.objects.get(done_at__isnull=True)
    assert (left.ticket_id, left.claim, left.claimed_until, left.error) == (broken, "", None, "")


def test_a_database_error_is_retried_then_the_claims_are_given_back_for_the_sweeper(kb, settings, monkeypatch):
    from celery.exceptions import Retry
    from django.db import OperationalError

    from search import services
    from triage.work import backoff_seconds

    ticket = tickets()[0]
    TicketJob.objects.create(ticket=ticket, kind="suggest", requested_at=timezone.now())
    calls = []

    def down(ticket_ids, **kwargs):
        calls.append(list(ticket_ids))
        raise OperationalError("the database restarted")

    monkeypatch.setattr(services, "suggest_for_tickets", down)
    with pytest.raises(Retry) as retried:  # a first failure: the claim given back, retried after a wait
        suggest_articles_task.apply(args=[ticket.pk], throw=True)
    assert retried.value.when == backoff_seconds(0)
    job = TicketJob.objects.get(ticket=ticket)
    assert (job.done_at, job.claim, job.claimed_until) == (None, "", None)
    with pytest.raises(OperationalError):  # the last retry: left to the sweeper, given back
        suggest_articles_task.apply(args=[ticket.pk], throw=True, retries=suggest_articles_task.max_retries)
    job.refresh_from_db()
    assert (job.done_at, job.claim, job.claimed_until) == (None, "", None)
    assert calls == [[ticket.pk], [ticket.pk]]
