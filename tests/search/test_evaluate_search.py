from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from search.models import Article, FusionWeights
from tests.search.conftest import KB


@pytest.fixture
def eval_files(tmp_path):
    kb = tmp_path / "kb.jsonl"
    kb.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": r["external_id"],
                    "title": r["title"],
                    "body": r["body"],
                    "format": r.get("format", "markdown"),
                    "team": "ignored",
                }
            )
            for r in KB
        )
        + "\n"
    )
    queries = tmp_path / "queries.tsv"
    queries.write_text(
        "q1\trefund for a renewal I did not want\n"
        "q2\tforgot my password, reset email missing\n"
        "q3\tcamera light blinking orange, offline\n"
        "q4\tno label for this one\n"
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\tkb-refund\t1\nq2\tkb-password\t1\nq3\tkb-offline\t2\nq3\tkb-shipping\t0\n")
    return kb, queries, qrels


def test_it_reports_every_stage_as_a_table_and_json_without_touching_the_live_kb(eval_files, tmp_path, kb, capsys):
    live = set(Article.objects.values_list("pk", "content_hash"))
    out = tmp_path / "metrics.json"
    kb_file, queries, qrels = eval_files
    call_command(
        "evaluate_search",
        "--kb",
        str(kb_file),
        "--queries",
        str(queries),
        "--qrels",
        str(qrels),
        "--json",
        str(out),
        "--cache",
        str(tmp_path / "cache.sqlite"),
    )
    printed = capsys.readouterr()
    assert "1 query(ies) have no relevant article" in printed.out
    for stage in ("dense", "hybrid", "rerank", "final"):
        assert stage in printed.out
    metrics = json.loads(out.read_text())
    assert {"dense", "hybrid", "rerank", "final", "meta"} <= set(metrics) and "feedback" not in metrics
    for stage in ("dense", "hybrid", "rerank", "final"):
        assert metrics[stage]["queries"] == 3
        assert metrics[stage]["mrr@10"] == pytest.approx(1.0)
        assert metrics[stage]["recall@100"] == pytest.approx(1.0)
    assert set(Article.objects.values_list("pk", "content_hash")) == live


def test_fit_search_weights_stores_weights_the_app_then_serves(eval_files, tmp_path, db, capsys):
    kb_file, queries, qrels = eval_files
    call_command(
        "fit_search_weights",
        "--kb",
        str(kb_file),
        "--queries",
        str(queries),
        "--qrels",
        str(qrels),
        "--min-queries",
        "3",
        "--store",
        "--output",
        str(tmp_path / "w.json"),
        "--cache",
        str(tmp_path / "cache.sqlite"),
    )
    row = FusionWeights.objects.get()
    assert row.source == "labeled" and row.n_queries == 3
    assert sum(row.weights.values()) == pytest.approx(1.0)
    assert json.loads((tmp_path / "w.json").read_text())["weights"] == row.weights
    with pytest.raises(CommandError, match="need at least 20"):
        call_command(
            "fit_search_weights",
            "--kb",
            str(kb_file),
            "--queries",
            str(queries),
            "--qrels",
            str(qrels),
            "--store",
            "--cache",
            str(tmp_path / "cache.sqlite"),
        )


def test_fit_search_weights_fits_several_sets_at_once(eval_files, tmp_path, db, capsys):
    kb_file, queries, qrels = eval_files
    common = ["--kb", str(kb_file), "--min-queries", "3", "--cache", str(tmp_path / "cache.sqlite")]
    pair = ["--queries", str(queries), "--qrels", str(qrels)]
    call_command("fit_search_weights", *common, *pair, *pair, "--output", str(tmp_path / "w.json"), "--step", "0.25")
    payload = json.loads((tmp_path / "w.json").read_text())
    assert payload["n_queries"] == 6 and len(payload["per_set_metrics"]) == 2
    assert payload["margin"] >= -1e-9
    with pytest.raises(CommandError, match="in pairs"):
        call_command("fit_search_weights", *common, *pair, "--queries", str(queries), "--store")
    with pytest.raises(CommandError, match="once per --queries"):
        call_command("fit_search_weights", *common, "--kb", str(kb_file), "--kb", str(kb_file), *pair, "--store")
    with pytest.raises(CommandError, match="not a fusion weights file"):
        (tmp_path / "bad.json").write_text('{"weights": {"bm25": 1}}')
        call_command("evaluate_search", "--kb", str(kb_file), *pair, "--weights", str(tmp_path / "bad.json"))


def test_a_feedback_file_adds_the_feedback_stage_and_final_uses_the_learned_questions(eval_files, tmp_path, kb, capsys):
    kb_file, queries, qrels = eval_files
    feedback = tmp_path / "feedback.tsv"
    # Past tickets worded unlike the articles, marked by agents; none of them is a query.
    feedback.write_text(
        "text\tarticle_id\thelpful\n"
        "Hi, you took 99 euros off me again for the yearly plan, I had quit! Thanks, Bob\tkb-refund\t1\n"
        "the little lamp on the cam keeps flashing amber\tkb-offline\t1\n"
        "the little lamp on the cam keeps flashing amber\tkb-shipping\t0\n"
    )
    queries.write_text(queries.read_text() + "q5\tyou took 99 euros off me for the yearly plan again\n")
    qrels.write_text(qrels.read_text() + "q5\tkb-refund\t1\n")
    out = tmp_path / "metrics.json"
    call_command(
        "evaluate_search",
        *("--kb", str(kb_file), "--queries", str(queries), "--qrels", str(qrels)),
        *("--feedback", str(feedback), "--json", str(out), "--cache", str(tmp_path / "cache.sqlite")),
        "--rerank-depth",
        "0",
    )
    metrics = json.loads(out.read_text())
    assert {"dense", "hybrid", "rerank", "feedback", "final", "final_without_feedback"} <= set(metrics)
    assert metrics["feedback"]["mrr@10"] == pytest.approx(1.0) and metrics["final"]["queries"] == 4
    # Two past tickets are too few to fit on: the policy in force serves, its dense weight on feedback.
    assert metrics["meta"]["guard"] == {"chosen": "in force", "held_out": {}, "n_tickets": 2}
    assert not Article.objects.filter(title="ignored").exists()

    bad = tmp_path / "bad_feedback.tsv"
    for content, error in (
        ("text\tarticle\n", "header text<TAB>article_id<TAB>helpful"),
        ("text\tarticle_id\thelpful\nsome ticket\tkb-refund\tyes\n", "helpful must be 1 or 0"),
        ("text\tarticle_id\thelpful\nsome ticket\tkb-nowhere\t1\n", "'kb-nowhere' is not in the KB"),
        # A query's own ticket marked: its answer would leak into the feedback stage (spacing and case aside).
        (
            "text\tarticle_id\thelpful\nForgot my password,  reset email missing\tkb-password\t1\n",
            r"1 mark\(s\) are on tickets that are also evaluated queries \('Forgot my password",
        ),
    ):
        bad.write_text(content)
        with pytest.raises(CommandError, match=error):
            call_command(
                "evaluate_search",
                *("--kb", str(kb_file), "--queries", str(queries), "--qrels", str(qrels), "--feedback", str(bad)),
            )


def test_bad_evaluation_files_are_named_with_their_line(eval_files, tmp_path, db):
    kb_file, queries, qrels = eval_files
    bad_queries = tmp_path / "bad.tsv"
    bad_queries.write_text("q1 no tab here\n")
    with pytest.raises(CommandError, match=r"bad.tsv:1: expected qid<TAB>text"):
        call_command("evaluate_search", "--kb", str(kb_file), "--queries", str(bad_queries), "--qrels", str(qrels))
    bad_qrels = tmp_path / "badq.tsv"
    bad_qrels.write_text("q1\tkb-refund\tvery\n")
    with pytest.raises(CommandError, match="relevance must be an integer"):
        call_command("evaluate_search", "--kb", str(kb_file), "--queries", str(queries), "--qrels", str(bad_qrels))


def test_fitting_on_feedback_needs_enough_marked_tickets(kb, agent_alice):
    from search.services import record_suggestion_feedback, suggest_for_ticket
    from triage.models import Ticket

    ticket = Ticket.objects.create(subject="refund", body="I want my money back for the renewal")
    suggest_for_ticket(ticket, search_kwargs={"rerank_depth": 0})
    record_suggestion_feedback(ticket, kb["kb-refund"], helpful=True, agent=agent_alice)
    record_suggestion_feedback(ticket, kb["kb-password"], helpful=False, agent=agent_alice)
    with pytest.raises(CommandError, match="only 1 marked tickets; need at least 20"):
        call_command("fit_search_weights", "--from-feedback", "--store")
    call_command("fit_search_weights", "--from-feedback", "--store", "--min-queries", "1", "--step", "0.25")
    # One ticket, one fold: nothing is held out that the fit could win on, so the policy in force stays.
    assert not FusionWeights.objects.exists()
