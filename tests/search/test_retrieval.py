from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from search.models import Article, Passage, Suggestion
from search.retrieval import dense_passages, fuse, lexical_passages, search
from search.services import set_published, suggest_for_ticket
from triage.models import Ticket


def titles(result, k=4):
    return [Article.objects.get(pk=hit.article_id).external_id for hit in result.top(k)]


def test_a_ticket_finds_the_article_that_answers_it_at_every_stage(kb, embedder, cross_encoder):
    result = search(
        "I was charged for the renewal and want my money back",
        embedder=embedder,
        cross_encoder=cross_encoder,
        rerank_depth=30,  # whatever SEARCH_RERANK says for this machine
    )
    refund = kb["kb-refund"].pk
    assert titles(result)[0] == "kb-refund"
    for stage in ("dense", "hybrid", "rerank"):
        scores = result.stage_scores[stage]
        assert max(scores, key=scores.get) == refund, stage
    best = result.top(1)[0]
    assert best.passage_text.startswith("Request a refund for a subscription charge\n\n")
    assert set(best.stage_scores()) == {"dense", "hybrid", "rerank", "feedback", "final"}
    # Nothing learned yet: the feedback stage is the dense stage.
    assert result.stage_scores["feedback"] == result.stage_scores["dense"]


def test_a_query_with_no_text_is_refused(kb):
    for query in ("", "   \n\t", None):
        with pytest.raises(ValidationError) as caught:
            search(query)
        assert "query" in caught.value.message_dict


def test_a_query_of_stop_words_only_still_gets_dense_results(kb, embedder):
    assert lexical_passages("the and of", 10) == []
    result = search("the and of", embedder=embedder, rerank_depth=0)
    assert len(result.articles) == 4 and result.stage_scores["rerank"] == {}


def test_full_text_matches_any_of_the_query_words(kb):
    rows = lexical_passages("my tracking number label nonsenseword", 10)
    assert rows and rows[0][1] == kb["kb-shipping"].pk


def test_dense_search_uses_the_hnsw_index(kb, embedder):
    vector = embedder.encode(["camera offline"])[0]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM search_passage ORDER BY embedding <=> %s::vector LIMIT 5",
            ["[" + ",".join(map(str, vector.tolist())) + "]"],
        )
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert "passage_embedding_hnsw" in plan
    rows = dense_passages(vector, 5, embedder.version)
    assert rows[0][1] == kb["kb-offline"].pk
    assert [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)


def test_unpublished_and_other_embedder_passages_are_not_served(kb, embedder):
    set_published(kb["kb-offline"], False)
    Passage.objects.filter(article=kb["kb-password"]).update(embedder_version="old@1")
    rows = dense_passages(embedder.encode(["camera offline password"])[0], 100, embedder.version)
    served = {r[1] for r in rows}
    assert kb["kb-offline"].pk not in served and kb["kb-password"].pk not in served
    assert kb["kb-refund"].pk in served


def test_an_article_without_its_passages_stored_is_never_served(kb, embedder):
    Article.objects.filter(pk=kb["kb-refund"].pk).update(indexed_hash="", index_state="indexing")
    result = search("refund my renewal charge", embedder=embedder, rerank_depth=0)
    assert kb["kb-refund"].pk not in {h.article_id for h in result.articles}


def test_reciprocal_rank_fusion_rewards_passages_both_lists_agree_on():
    dense = [(1, 10, "a", 0.9), (2, 20, "b", 0.8)]
    lexical = [(2, 20, "b", 3.0), (3, 30, "c", 2.0)]
    fused = fuse(dense, lexical, k=60)
    assert [h.passage_id for h in fused] == [2, 1, 3]
    assert fused[0].rrf == pytest.approx(1 / 62 + 1 / 61)
    assert fused[0].dense_rank == 2 and fused[0].lexical_rank == 1


def test_suggestions_are_stored_for_a_ticket_with_the_matching_passage(kb, settings):
    settings.SEARCH_RERANK = "all"
    ticket = Ticket.objects.create(subject="cant log in", body="forgot my password and the reset email never comes")
    stored = suggest_for_ticket(ticket, k=2)
    assert [s.rank for s in stored] == [1, 2]
    assert stored[0].article == kb["kb-password"]
    assert stored[0].passage.article_id == kb["kb-password"].pk
    assert stored[0].passage_text.startswith("Reset your password")
    assert stored[0].score == stored[0].stage_scores["final"]
    assert {"dense", "hybrid", "rerank", "final", "weights", "embedder", "reranker"} <= set(stored[0].stage_scores)
    assert stored[0].stage_scores["weights_regime"] in ("short", "long", "all")
    # On demand again: replaced, not duplicated.
    suggest_for_ticket(ticket, k=3)
    assert Suggestion.objects.filter(ticket=ticket).count() == 3


def test_an_empty_knowledge_base_gives_no_suggestions(db):
    ticket = Ticket.objects.create(subject="hello", body="anything")
    assert suggest_for_ticket(ticket) == []


def test_a_length_gated_policy_ranks_each_query_with_the_weights_for_its_length(kb, settings):
    from search.fusion import FusionPolicy

    settings.SEARCH_RERANK = "all"
    policy = FusionPolicy(short={"rerank": 1}, long={"dense": 1}, short_max_words=4)
    short = search("password reset", weights=policy)
    assert short.weights == {"dense": 0.0, "hybrid": 0.0, "rerank": 1.0, "feedback": 0.0}
    assert [h.article_id for h in short.top(3)] == sorted(
        short.stage_scores["rerank"], key=lambda a: -short.stage_scores["rerank"][a]
    )[:3]
    long = search("I forgot my password and the reset email never arrives", weights=policy)
    assert long.weights == {"dense": 1.0, "hybrid": 0.0, "rerank": 0.0, "feedback": 0.0}
    assert [h.article_id for h in long.top(3)] == sorted(
        long.stage_scores["dense"], key=lambda a: -long.stage_scores["dense"][a]
    )[:3]


def test_search_rerank_says_which_queries_the_cross_encoder_reads(kb, embedder, settings):
    from search.retrieval import rerank_scope

    settings.SEARCH_RERANK = "short"
    short = search("password reset email", embedder=embedder)
    long = search("I forgot my password and the reset email never arrives in my inbox at all", embedder=embedder)
    assert short.stage_scores["rerank"] and "rerank" in short.timings_ms
    assert long.stage_scores["rerank"] == {} and "rerank" not in long.timings_ms
    settings.SEARCH_RERANK = "off"
    assert search("password reset email", embedder=embedder).stage_scores["rerank"] == {}
    settings.SEARCH_RERANK = "auto"
    assert rerank_scope() in ("all", "off")
