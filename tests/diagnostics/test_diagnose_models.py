"""``diagnose_models`` and /models/diagnostics/: the checks on the real packaged models."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from learning.diagnostics import PASS, SKIP, WARN, load_report, pair_checks, run_diagnostics, save_report
from learning.diagnostics_samples import DEMO, MARKS, SanityPair, sanity_pairs
from search.services import record_suggestion_feedback
from tests.dashboard.builders import make_ticket

CHECKS = [
    "window: tickets",
    "window: passages",
    "window: ticket + passage",
    "window: routing",
    "sanity: embedder",
    "sanity: reranker",
    "pair order",
    "precision",
    "precision: embedder",
]


def _by_name(report):
    return {c.name: c for c in report.checks}


def test_the_command_checks_the_serving_models_on_the_demo_help_centre_before_any_data(db, tmp_path, settings):
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    out = tmp_path / "report.json"
    call_command("diagnose_models", "--tickets", "40", "--passages", "60", "--pairs", "6", "--json", str(out))
    data = json.loads(out.read_text())
    report = load_report()  # saved for the page, the same run
    assert report is not None and report.to_json() == data
    checks = _by_name(report)
    assert list(checks) == CHECKS
    assert report.samples == {
        "tickets": f"40 {DEMO}",
        "passages": f"60 {DEMO}",
        "sanity pairs": f"6 from {DEMO}",
    }
    # Passages are split to fit the embedder's window: none is cut.
    passages = checks["window: passages"]
    assert passages.status == PASS and passages.numbers["cut"] == 0 and passages.numbers["window"] == 256
    assert checks["window: ticket + passage"].numbers["window"] == 512
    assert checks["window: routing"].status == SKIP  # the embedding router is the embedder checked above
    # Demo tickets against the article that answers them and one of another team: both models know.
    for name in ("sanity: embedder", "sanity: reranker"):
        assert checks[name].status == PASS and checks[name].numbers["share"] >= 0.9, checks[name].line
    order = checks["pair order"]
    assert order.numbers["mean_abs_diff"] > 0.1  # the cross-encoder is not symmetric
    assert order.numbers["sanity_ticket_first"] >= order.numbers["sanity_passage_first"]
    # On this CPU the reranker serves the float32 graph of the export (or bfloat16 where native): it
    # ranks like the float32 torch reference of the same weights.
    precision = checks["precision"]
    assert precision.status == PASS and precision.numbers["same_best_passage"] >= 0.95
    assert precision.numbers["pairs"] == 6 * 2 * 3


def test_strict_fails_when_a_check_warns_and_says_which(db, settings):
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    long_body = " ".join(f"The parcel number {i} never arrived at the depot." for i in range(60))
    for i in range(5):
        make_ticket(f"Lost parcel {i}", long_body)
    call_command("diagnose_models", "--tickets", "5", "--passages", "20", "--pairs", "3")  # warns, exits 0
    tickets = _by_name(load_report())["window: tickets"]
    assert tickets.status == WARN and tickets.numbers["cut"] == 5 and tickets.numbers["max_tokens"] > 256
    assert load_report().samples["tickets"] == "5 newest tickets"
    with pytest.raises(CommandError, match=r"warn: window: tickets"):
        call_command("diagnose_models", "--tickets", "5", "--passages", "20", "--pairs", "3", "--strict")


def test_helpful_marks_are_the_sanity_pairs_once_there_are_any(kb, embedder, settings):
    ticket = make_ticket("Refund please", "I was charged for a renewal I did not want, can I get my money back?")
    record_suggestion_feedback(ticket, kb["kb-refund"], helpful=True)
    pairs, source = sanity_pairs(10, embedder)
    assert source == MARKS and len(pairs) == 1
    assert pairs[0].helpful == kb["kb-refund"].title and pairs[0].unrelated != kb["kb-refund"].title
    assert pairs[0].helpful_passages == tuple(
        kb["kb-refund"].passages.order_by("position").values_list("text", flat=True)
    )
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    report = run_diagnostics(tickets=5, passages=10, pairs=10)
    assert report.samples["sanity pairs"] == f"1 from {MARKS}"
    assert report.samples["passages"] == f"{kb['kb-refund'].passages.model.objects.count()} indexed passages"


def test_the_int8_graph_is_measured_against_the_float_reference(db, embedder):
    from mlops.inference.encoders import PACKAGED_RERANKER, CrossEncoder

    pairs, _ = sanity_pairs(4, embedder)
    int8 = pair_checks(embedder, CrossEncoder(PACKAGED_RERANKER, backend="onnx", dtype="int8"), pairs, print)
    served = pair_checks(embedder, CrossEncoder(PACKAGED_RERANKER, backend="onnx"), pairs, print)
    int8_precision, float_precision = _by_name_list(int8)["precision"], _by_name_list(served)["precision"]
    # The int8 graph quantizes activations at run time: its logits move; the float32 graph's do not.
    assert int8_precision.numbers["max_abs_diff"] > 0.05
    assert float_precision.numbers["max_abs_diff"] < 1e-3
    assert "int8" in int8_precision.model and "float32" in float_precision.model


def _by_name_list(checks):
    return {c.name: c for c in checks}


def test_a_reversed_cross_encoder_would_be_caught_by_the_pair_order_check(embedder, cross_encoder):
    """The check compares the served order with the other: a reranker fed (passage, ticket) warns."""

    class Reversed:
        version = cross_encoder.version
        info = cross_encoder.info
        impl = cross_encoder.impl

        def predict(self, pairs, batch_size=32):
            return cross_encoder.predict([(b, a) for a, b in pairs], batch_size=batch_size)

    pair = SanityPair(
        "How do I reset my password? The reset email never arrives.",
        "Reset your password",
        "Track your order",
        ("Reset your password\n\nTap Forgot password? on the sign-in screen and enter your email.",),
        ("Track your order\n\nEvery order gets a tracking number by email once it ships.",),
    )
    checks = _by_name_list(pair_checks(embedder, Reversed(), [pair] * 3, print))
    normal = _by_name_list(pair_checks(embedder, cross_encoder, [pair] * 3, print))
    assert normal["pair order"].status == PASS
    flipped = checks["pair order"].numbers
    assert flipped["sanity_ticket_first"] == normal["pair order"].numbers["sanity_passage_first"]
    assert np.isclose(flipped["mean_abs_diff"], normal["pair order"].numbers["mean_abs_diff"], atol=1e-3)


# --- The page ---------------------------------------------------------------------------------------------------
def test_the_page_is_for_admins_only(agent_client, db):
    from django.test import Client

    assert agent_client.get("/models/diagnostics/").status_code == 403
    assert agent_client.post("/models/diagnostics/run/", {"tickets": 5, "passages": 5, "pairs": 5}).status_code == 403
    assert Client().get("/models/diagnostics/").status_code == 302  # to the login page


def test_the_page_shows_the_last_run_and_refuses_bad_sample_sizes(admin_client_ada, db, settings):
    page = admin_client_ada.get("/models/diagnostics/")
    assert page.status_code == 200 and 'data-testid="no-report"' in page.content.decode()
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    save_report(run_diagnostics(tickets=10, passages=10, pairs=2))
    html = admin_client_ada.get("/models/diagnostics/").content.decode()
    for name in CHECKS:
        assert f'data-check="{name}"' in html
    assert 'name="pairs" value="2"' in html  # the form starts from the last run's sizes
    for bad in (
        {"tickets": 0, "passages": 5, "pairs": 5},
        {"tickets": "x", "passages": 5, "pairs": 5},
        {"tickets": 5, "passages": 5, "pairs": 10_000},
    ):
        answer = admin_client_ada.post("/models/diagnostics/run/", bad)
        assert answer.status_code == 400 and 'data-testid="diagnostics-error"' in answer.content.decode()
    assert admin_client_ada.get("/models/diagnostics/run/not-a-task/").status_code == 404


def test_a_run_from_the_page_happens_on_an_inference_worker_and_the_page_polls_it(admin_client_ada, tmp_path):
    from tests.workers import celery_worker, purge_queues, wait_for

    purge_queues()
    env = {"TRIAGE_ROUTING_SCORER": "embedding", "TRIAGE_WARM_MODELS": "0", "TRIAGE_ARTIFACTS_DIR": str(tmp_path)}
    with celery_worker(queues="inference", extra_env=env):
        started = admin_client_ada.post("/models/diagnostics/run/", {"tickets": 10, "passages": 10, "pairs": 2})
        assert started.status_code == 200
        poll = re.search(r'hx-get="([^"]+)"', started.content.decode()).group(1)
        pages: list[str] = []

        def finished() -> bool:
            pages.append(admin_client_ada.get(poll).content.decode())
            return 'data-state="SUCCESS"' in pages[-1] or 'data-state="FAILURE"' in pages[-1]

        wait_for(finished, timeout=400, message="the diagnostics run to finish")
    assert 'data-state="SUCCESS"' in pages[-1], pages[-1]
    assert 'data-check="precision"' in pages[-1] and "hx-get" not in pages[-1]
    assert load_report().options == {"tickets": 10, "passages": 10, "pairs": 2}


def test_a_self_trained_router_is_checked_on_its_own_encoders_window():
    """The self-trained head reads tickets through the packaged bge-small ONNX encoder, not the search
    bi-encoder: its window is measured with its own tokenizer, uncut."""
    from mlops.inference.probes import scorer_window
    from mlops.inference.selftrain import SelfTrainedScorer, get_teacher

    window, count = scorer_window(SelfTrainedScorer(get_teacher(), head=None))
    assert window == 256
    short, long = count(["card declined", "word " * 400]).tolist()
    assert short < 10 and long > 400  # the serving tokenizer would have cut it to 256
