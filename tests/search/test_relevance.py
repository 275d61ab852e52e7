from __future__ import annotations

import json

import pytest

from search.fusion import FusionPolicy, weights_for
from search.models import Suggestion
from search.relevance import (
    FEATURES,
    RelevanceModel,
    apply_model,
    candidate_features,
    cutoff_metrics,
    fit_relevance_model,
    load_relevance_model,
)
from triage.models import Ticket

POLICY = FusionPolicy.single({"dense": 0.5, "hybrid": 0.5})


def query(relevant_first: bool, margin: float) -> dict:
    dense = {f"a{i}": 0.3 + 0.01 * i for i in range(8)}
    dense["r"] = max(dense.values()) + margin if relevant_first else 0.25
    return {"dense": dense, "hybrid": dict(dense), "rerank": {}, "feedback": dict(dense)}


def test_candidate_features_describe_the_top_five_best_first():
    f = query(True, 0.2)
    rows = candidate_features(f, {a: v for a, v in f["dense"].items()})
    assert [a for a, _ in rows] == ["r", "a7", "a6", "a5", "a4"]
    assert len(rows[0][1]) == len(FEATURES) and rows[0][1][1] == 0.0  # the best dense is 0 below itself
    assert [v[3] for _, v in rows] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_a_fitted_model_is_surer_of_clear_winners_and_its_cutoff_silences_queries_without_an_answer():
    features, qrels = {}, {}
    for i in range(60):
        features[f"clear{i}"] = query(True, 0.15 + 0.001 * i)
        qrels[f"clear{i}"] = {"r": 1}
        features[f"none{i}"] = query(False, 0.0)  # nothing relevant among the candidates
    model = fit_relevance_model([("synthetic", features, qrels, lambda q: weights_for(POLICY, 10))], min_coverage=0.9)
    probabilities, finals = apply_model(model, features, lambda q: weights_for(POLICY, 10))
    assert max(probabilities["clear0"].values()) > max(probabilities["none0"].values())
    metrics = cutoff_metrics(probabilities, finals, qrels, model.cutoff)
    assert metrics["coverage"] >= 0.9 and metrics["no_answer_queries"] == 60
    assert metrics["no_answer_silent"] > 0.9 and metrics["precision"] > 0.9
    assert RelevanceModel.from_json(json.loads(json.dumps(model.to_json()))) == model
    with pytest.raises(ValueError, match="expected"):
        RelevanceModel.from_json({**model.to_json(), "features": ["dense"]})


def test_the_shipped_model_scores_stored_suggestions_and_the_page_says_when_no_article_fits(kb, agent_client):
    from search.services import suggest_for_ticket

    model = load_relevance_model()
    assert model is not None and 0 < model.cutoff < 1
    answered = Ticket.objects.create(subject="Refund", body="I was charged for the renewal and want a refund")
    stored = suggest_for_ticket(answered, search_kwargs={"rerank_depth": 0})
    assert stored and all(0 <= s.relevance <= 1 for s in stored)
    assert stored[0].relevance == max(s.relevance for s in stored)

    unanswered = Ticket.objects.create(subject="Lunch", body="what is the soup of the day in your canteen")
    suggest_for_ticket(unanswered, search_kwargs={"rerank_depth": 0})
    Suggestion.objects.filter(ticket=unanswered).update(fits=False)  # as stored below the cutoff
    page = agent_client.get(f"/tickets/{unanswered.pk}/").content.decode()
    assert "No article fits this ticket." in page and 'data-testid="weak-suggestions"' in page
    # The refund ticket's first suggestion is a clear winner: it fits, and the page lists it.
    assert Suggestion.objects.get(ticket=answered, rank=1).fits
    page = agent_client.get(f"/tickets/{answered.pk}/").content.decode()
    assert "No article fits" not in page and 'data-testid="suggestions"' in page
