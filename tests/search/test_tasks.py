from __future__ import annotations

import pytest

from search.models import Article, Suggestion
from search.services import upsert_article
from tests.search.conftest import KB
from tests.workers import wait_for
from triage.services import create_ticket


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_indexes_new_articles_and_suggests_them_for_a_new_ticket(worker):
    for row in KB:
        upsert_article({k: v for k, v in row.items() if k != "team"})
    wait_for(
        lambda: Article.objects.searchable().count() == len(KB),
        timeout=300,
        message=f"articles indexed by the worker\n{worker.log()[-3000:]}",
    )
    ticket, _ = create_ticket(
        {"subject": "cant log in", "body": "forgot my password and the reset email never arrives"}
    )
    suggestions = wait_for(
        lambda: list(Suggestion.objects.filter(ticket=ticket)),
        timeout=300,
        message=f"suggestions stored\n{worker.log()[-3000:]}",
    )
    assert suggestions[0].article.external_id == "kb-password"
    assert suggestions[0].passage is not None

    # An edit is re-indexed by the worker; the article stays searchable throughout.
    article, _ = upsert_article(
        {
            "external_id": "kb-password",
            "title": "Reset your password",
            "body": "Use **Forgot password?** and follow the email link.",
        }
    )
    assert Article.objects.searchable().filter(pk=article.pk).exists()
    wait_for(lambda: Article.objects.get(pk=article.pk).index_state == "indexed", timeout=300, message="re-indexed")
    assert "follow the email link" in article.passages.get().text


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_suggestions_can_be_recomputed_on_demand_by_the_worker(worker):
    from django.db import transaction

    from search.services import request_suggestions
    from triage.models import Ticket

    upsert_article({k: v for k, v in KB[0].items() if k != "team"})
    wait_for(lambda: Article.objects.searchable().exists(), timeout=300, message="article indexed")
    ticket = Ticket.objects.create(subject="refund", body="charged for a renewal I did not want")
    with transaction.atomic():
        request_suggestions(ticket.pk)
    stored = wait_for(lambda: list(Suggestion.objects.filter(ticket=ticket)), timeout=300, message="suggestions")
    assert stored[0].article.external_id == "kb-refund"
