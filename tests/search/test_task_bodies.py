from __future__ import annotations

from search.models import Article, Suggestion
from search.tasks import index_article_task, reindex_articles_task, suggest_articles_task
from triage.models import Ticket


def test_the_suggest_task_stores_suggestions_and_ignores_a_deleted_ticket(kb):
    ticket = Ticket.objects.create(subject="refund", body="money back for the renewal please")
    assert suggest_articles_task.apply(args=[ticket.pk]).get() == 4
    assert suggest_articles_task.apply(args=[ticket.pk]).get() == 4  # redelivered: same rows
    assert Suggestion.objects.filter(ticket=ticket).count() == 4
    assert suggest_articles_task.apply(args=[10**9]).get() == 0


def test_index_tasks_are_harmless_when_repeated(kb):
    article = kb["kb-refund"]
    assert index_article_task.apply(args=[article.pk]).get() == "unchanged"
    assert index_article_task.apply(args=[10**9]).get() == "missing"
    Article.objects.filter(pk=article.pk).update(embedder_version="old@1")
    result = reindex_articles_task.apply(kwargs={"batch_size": 10}).get()
    assert result == {"outcomes": {"indexed": 1}, "remaining": 0}
