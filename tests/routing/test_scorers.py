"""Offline scorers with the packaged models, the registry, and the fallback when NLI cannot load."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from mlops.inference import registry
from mlops.inference.encoders import ModelUnavailable
from mlops.inference.offline_scorers import CrossEncoderScorer, EnsembleScorer
from mlops.inference.scorers import ClassSpec, InvalidInput, TextFitter, humanize_label
from tests.routing.conftest import TEAMS

CLASSES = [ClassSpec(slug, name, description) for slug, name, description in TEAMS]
TICKETS = [
    ("I was charged twice for my subscription this month", "billing"),
    ("The two-factor code never arrives and I cannot log in", "sign-in"),
    ("My parcel is a week late and tracking has not moved", "delivery"),
]


@pytest.fixture(scope="module")
def embedding():
    return registry.get_scorer("embedding")


@pytest.fixture(scope="module")
def cross_encoder():
    return registry.get_scorer("cross-encoder")


@pytest.mark.parametrize("name", ["embedding", "cross-encoder", "ensemble"])
def test_each_offline_scorer_routes_plain_tickets_to_the_right_team(name):
    scorer = registry.get_scorer(name)
    texts = [text for text, _ in TICKETS]
    scores = scorer.score(texts, CLASSES)
    assert scores.shape == (3, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-9)
    assert [CLASSES[i].slug for i in scores.argmax(axis=1)] == [label for _, label in TICKETS]
    assert scorer.version and scorer.model_ref


def test_the_registry_loads_each_scorer_once_per_process():
    assert registry.get_scorer("embedding") is registry.get_scorer("embedding")
    ensemble = registry.get_scorer("ensemble")
    assert ensemble.embedding is registry.get_scorer("embedding")
    with pytest.raises(KeyError, match="unknown scorer 'telepathy'"):
        registry.get_scorer("telepathy")


def test_class_embeddings_are_cached_between_tickets(embedding):
    first = embedding.class_vectors(CLASSES)
    assert embedding.class_vectors(list(CLASSES)) is first


def test_example_tickets_pull_a_class_towards_them(embedding):
    text = ["ship me the thing"]
    plain = [ClassSpec("a", "Alpha"), ClassSpec("b", "Beta")]
    with_examples = [ClassSpec("a", "Alpha", examples=("send the item to me", "please ship my thing")), plain[1]]
    assert embedding.score(text, with_examples)[0, 0] > embedding.score(text, plain)[0, 0]


def test_the_ensemble_lets_the_cross_encoder_rescore_only_the_shortlist(embedding, cross_encoder):
    ensemble = EnsembleScorer(embedding, cross_encoder, shortlist=1, ce_weight=1.0)
    text = [TICKETS[0][0]]
    logits = ensemble.logits(text, CLASSES)
    base = embedding.logits(text, CLASSES)
    bonus = logits - base
    # One class read by the cross-encoder; the others get the same floor (its only logit).
    np.testing.assert_allclose(bonus, bonus[0, 0], atol=1e-6)
    assert ensemble.describe()["shortlist"] == 1


def test_long_tickets_keep_their_head_and_tail_for_the_cross_encoder(cross_encoder):
    fitter = cross_encoder.fitter
    assert isinstance(fitter, TextFitter)
    text = "My card was charged twice. " + "filler words here " * 400 + "Please refund the second charge."
    (fitted,) = fitter.fit([text], 60)
    assert fitted.startswith("My card was charged twice.")
    assert fitted.endswith("Please refund the second charge.")
    assert fitter.count([fitted])[0] <= 60
    scores = cross_encoder.score([text], CLASSES)
    assert CLASSES[int(scores.argmax())].slug == "billing"


EMAIL = (
    "Hi team,  I hope you're well and had a lovely weekend.  I was charged twice for my subscription this "
    "month.  Thanks so much in advance,  Anna Smith  Office Manager | Smith & Daughters  Tel. 01632 960 441  "
    "On Mon, Support wrote: > Your parcel is on its way, tracking number 1234."
)


@pytest.mark.parametrize("name", ["embedding", "cross-encoder", "ensemble"])
def test_a_polite_email_is_scored_on_its_ask_alone(name):
    scorer = registry.get_scorer(name)
    assert scorer.describe()["reads"] == "ask"
    np.testing.assert_allclose(
        scorer.logits([EMAIL], CLASSES), scorer.logits(["I was charged twice for my subscription this month."], CLASSES)
    )


def test_a_scorer_told_to_read_the_text_as_written_sees_the_quoted_reply(embedding):
    as_written = copy.copy(embedding)
    as_written.reads = "text"
    assert not np.allclose(as_written.logits([EMAIL], CLASSES), embedding.logits([EMAIL], CLASSES))
    assert as_written.config_hash != embedding.config_hash


def test_descriptions_too_long_for_the_cross_encoder_are_refused(cross_encoder):
    huge = ClassSpec("x", "X", "word " * 600)
    with pytest.raises(InvalidInput, match="no room for the ticket"):
        CrossEncoderScorer(cross_encoder.cross_encoder).score(["hello"], [huge, CLASSES[0]])


@pytest.mark.parametrize("name", ["embedding", "cross-encoder"])
def test_blank_texts_and_duplicate_classes_are_refused(name):
    scorer = registry.get_scorer(name)
    with pytest.raises(InvalidInput, match="empty or only whitespace"):
        scorer.score(["  "], CLASSES)
    with pytest.raises(InvalidInput, match="duplicate class name"):
        scorer.score(["hello"], [ClassSpec("a", "Billing"), ClassSpec("b", "billing")])


def test_labels_read_as_people_say_them():
    assert humanize_label("Refund_not_showing_up") == "refund not showing up"
    assert humanize_label("reverted_card_payment?") == "reverted card payment"
    assert ClassSpec.from_label("card_arrival").name == "card arrival"


def test_auto_falls_back_to_the_best_offline_scorer_and_says_why(settings, tmp_path):
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "no-such-nli-model")
    settings.TRIAGE_ROUTING_SCORER = "auto"
    choice = registry.resolve_scorer()
    assert choice.scorer.name == "ensemble"
    assert choice.degraded
    assert "NLI model" in choice.message and "could not be loaded (" in choice.message
    assert choice.message.endswith("; routing with ensemble")


def test_a_broken_nli_config_falls_back_too(settings, nli_models):
    settings.TRIAGE_NLI_MODEL = nli_models["no-entailment"]
    choice = registry.resolve_scorer("nli")
    assert choice.scorer.name == "ensemble"
    assert "entailment" in choice.fallback_reason


def test_auto_routes_with_nli_when_the_model_loads(settings, nli_models):
    settings.TRIAGE_NLI_MODEL = nli_models["bert"]
    choice = registry.resolve_scorer("auto")
    assert choice.scorer.name == "nli" and not choice.degraded


def test_a_failed_load_is_remembered_not_retried_on_every_ticket(settings, tmp_path, monkeypatch):
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "missing")
    with pytest.raises(ModelUnavailable):
        registry.get_scorer("nli")
    calls = []
    monkeypatch.setitem(registry.SCORERS, "nli", "tests.routing.test_scorers.counting_builder")
    monkeypatch.setattr(registry, "_cache", {}, raising=True)
    counting_builder.calls = calls
    for _ in range(3):
        with pytest.raises(ModelUnavailable):
            registry.get_scorer("nli")
    assert len(calls) == 1


def counting_builder():
    counting_builder.calls.append(1)
    raise ModelUnavailable("not here")
