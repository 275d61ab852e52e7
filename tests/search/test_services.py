from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from search.indexing import index_article, reindex_all, reindex_status
from search.models import Article, Passage
from search.services import delete_article, set_published, upsert_article


def test_it_creates_then_finds_an_article_by_external_id_without_duplicating(teams):
    row = {"external_id": "kb-1", "title": "Refunds", "body": "Ask within **14 days**.", "team": "billing"}
    first, outcome = upsert_article(row, index=False)
    assert outcome == "created"
    assert first.body_html == "<p>Ask within <strong>14 days</strong>.</p>"
    assert first.body_text == "Ask within 14 days."
    assert first.index_state == Article.IndexState.PENDING
    again, outcome = upsert_article(row, index=False)
    assert (again.pk, outcome) == (first.pk, "unchanged")
    assert Article.objects.count() == 1


def test_it_matches_by_url_when_there_is_no_external_id(db):
    row = {"url": "https://help.example.com/a/1", "title": "Refunds", "body": "Ask."}
    first, _ = upsert_article(row, index=False)
    second, outcome = upsert_article({**row, "body": "Ask within 14 days."}, index=False)
    assert second.pk == first.pk and outcome == "updated"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"title": "T", "body": "   "}, "body", "is required"),
        ({"title": "", "body": "x"}, "title", "is required"),
        ({"title": "T", "body": "x" * 5_242_880}, "body", "the limit is 1,000,000"),
        ({"title": "T", "body": "PK\x03\x04\x00binary"}, "body", "binary control characters"),
        ({"title": "T", "body": b"caf\xe9"}, "body", "not valid UTF-8"),
        ({"title": "T", "body": "<script>alert(1)</script>", "format": "html"}, "body", "no readable text"),
        ({"title": "T", "body": "x", "url": "javascript:alert(1)"}, "url", "not a valid http(s) URL"),
        ({"title": "T", "body": "x", "team": "nope"}, "team", "unknown team"),
        ({"title": "T", "body": "x", "body_format": "pdf"}, "body_format", "must be one of"),
        ({"title": "T", "body": "x", "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_input_raises_a_validation_error_per_field_and_stores_nothing(db, data, field, message):
    with pytest.raises(ValidationError) as caught:
        upsert_article(data, index=False)
    assert any(message in m for m in caught.value.message_dict[field]), caught.value.message_dict
    assert Article.objects.count() == 0


def test_indexing_stores_every_passage_and_makes_the_article_searchable(teams, counting_embedder):
    article, _ = upsert_article({"external_id": "a", "title": "Refunds", "body": "Ask within 14 days."}, index=False)
    assert not Article.objects.searchable().exists()
    assert index_article(article.pk, embedder=counting_embedder) == "indexed"
    article.refresh_from_db()
    assert article.index_state == Article.IndexState.INDEXED
    assert article.indexed_hash == article.content_hash
    assert article.embedder_version == counting_embedder.version
    assert list(Article.objects.searchable()) == [article]
    passage = article.passages.get()
    assert passage.text == "Refunds\n\nAsk within 14 days."
    assert np.isclose(np.linalg.norm(passage.embedding), 1.0, atol=1e-4)
    # A second run with nothing changed embeds nothing.
    assert index_article(article.pk, embedder=counting_embedder) == "unchanged"
    assert len(counting_embedder.texts) == 1


def test_an_edit_re_embeds_only_the_sections_that_changed(db, counting_embedder):
    sections = [f"## Part {i}\n\n" + " ".join([f"fact{i}"] * 40) for i in range(4)]
    article, _ = upsert_article({"external_id": "e", "title": "Guide", "body": "\n\n".join(sections)}, index=False)
    index_article(article.pk, embedder=counting_embedder)
    assert article.passages.count() == 4 and len(counting_embedder.texts) == 4
    sections[2] = "## Part 2\n\n" + " ".join(["changed"] * 40)
    article, outcome = upsert_article(
        {"external_id": "e", "title": "Guide", "body": "\n\n".join(sections)}, index=False
    )
    assert outcome == "updated" and article.index_state == Article.IndexState.PENDING
    # Until the new passages are stored, the previous complete set keeps being served.
    assert Article.objects.searchable().filter(pk=article.pk).exists()
    index_article(article.pk, embedder=counting_embedder)
    assert len(counting_embedder.texts) == 5
    assert "changed" in counting_embedder.texts[-1]
    assert "changed" in article.passages.get(position=2).text


def test_a_publish_flag_or_team_change_does_not_re_index(teams, counting_embedder):
    article, _ = upsert_article({"external_id": "p", "title": "T", "body": "Body text."}, index=False)
    index_article(article.pk, embedder=counting_embedder)
    article, outcome = upsert_article({"external_id": "p", "team": "billing"}, index=False)
    assert outcome == "updated" and article.index_state == Article.IndexState.INDEXED
    set_published(article, False)
    assert not Article.objects.searchable().exists()
    assert index_article(article.pk, embedder=counting_embedder) == "unchanged"


def test_an_edit_made_while_indexing_wins_over_the_older_content(db, counting_embedder):
    article, _ = upsert_article({"external_id": "r", "title": "T", "body": "Old body."}, index=False)

    class EditsMidway(type(counting_embedder)):
        def encode(self, texts, batch_size=64):
            upsert_article({"external_id": "r", "title": "T", "body": "New body."}, index=False)
            return super().encode(texts, batch_size)

    assert index_article(article.pk, embedder=EditsMidway(counting_embedder.inner)) == "superseded"
    assert not Passage.objects.exists()
    assert index_article(article.pk, embedder=counting_embedder) == "indexed"
    assert "New body." in Passage.objects.get().text


def test_delete_removes_the_article_and_its_passages(kb):
    article = kb["kb-refund"]
    assert article.passages.exists()
    assert delete_article(article) is True
    assert not Passage.objects.filter(article_id=article.pk).exists()
    assert delete_article(article.pk) is False


def test_switching_the_embedder_re_indexes_the_articles_embedded_by_the_old_one(kb, embedder):
    Article.objects.filter(pk=kb["kb-refund"].pk).update(embedder_version="old-model@1")
    Passage.objects.filter(article=kb["kb-refund"]).update(embedder_version="old-model@1")
    status = reindex_status(embedder.version)
    assert status["remaining"] == 1 and status["current"] == 3
    done = []
    assert reindex_all(background=False, embedder=embedder, progress=lambda d, t: done.append((d, t))) == 1
    assert done == [(1, 1)]
    assert reindex_status(embedder.version)["remaining"] == 0
    assert set(Passage.objects.values_list("embedder_version", flat=True)) == {embedder.version}
