"""Scoring tags: NLI multi-label equals the zero-shot pipeline, offline scores are calibrated, never raw."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.calibration import apply_logistic_calibration, fit_logistic_calibration
from mlops.inference.offline_scorers import EmbeddingScorer
from tags.models import TagPrediction
from tags.scoring import TagSetSpec, TagSpec, score_tag_set, score_tags
from tags.services import create_tag_set, set_tag_calibration
from triage.models import Ticket

TEXTS = [
    "my card was charged twice, refund please",
    "password reset please, my account is locked",
    "where is my parcel? the order is late",
]
TOPICS = TagSetSpec(
    "topics",
    "multi",
    "zero_shot",
    (
        TagSpec("billing", "billing", hypothesis="This ticket is about a charge on a card."),
        TagSpec("login", "login"),
        TagSpec("delivery", "delivery", hypothesis="A parcel is late."),
    ),
)


def _pipeline_scores(path: str, texts, hypotheses, *, multi_label: bool) -> np.ndarray:
    from transformers import pipeline

    zero_shot = pipeline("zero-shot-classification", model=path, tokenizer=path, device="cpu")
    rows = []
    for text in texts:
        out = zero_shot(text, candidate_labels=hypotheses, hypothesis_template="{}", multi_label=multi_label)
        rows.append([out["scores"][out["labels"].index(h)] for h in hypotheses])
    return np.array(rows)


@pytest.mark.parametrize("kind", ["multi", "single"])
def test_nli_tag_scores_equal_the_zero_shot_pipeline(tiny_nli, kind):
    from mlops.inference.nli import NLIScorer

    spec = TagSetSpec(TOPICS.slug, kind, TOPICS.method, TOPICS.tags)
    scores = score_tag_set(TEXTS, spec, NLIScorer(tiny_nli, backend="torch", dtype="float32"))
    hypotheses = ["This ticket is about a charge on a card.", "This ticket is about login.", "A parcel is late."]
    theirs = _pipeline_scores(tiny_nli, TEXTS, hypotheses, multi_label=kind == "multi")
    np.testing.assert_allclose(scores.probabilities, theirs, atol=1e-4, rtol=0)
    assert np.ptp(scores.probabilities) > 0.2  # far from uniform: a wrong index or softmax axis would show
    assert scores.calibration == ["native"] * 3
    if kind == "multi":  # each tag on its own: rows need not sum to 1
        assert not np.allclose(scores.probabilities.sum(axis=1), 1.0, atol=1e-3)


def test_an_offline_tag_without_calibration_is_not_scored_rather_than_shown_as_a_cosine(monkeypatch, tmp_path):
    import tags.scoring as scoring

    monkeypatch.setattr(scoring, "POOLED_CALIBRATIONS", tmp_path / "no-shipped-calibration.json")
    scorer = EmbeddingScorer()
    spec = TagSetSpec("custom", "multi", "zero_shot", (TagSpec("billing", "billing", "Charges and refunds."),))
    scores = score_tag_set(TEXTS, spec, scorer)
    assert np.isnan(scores.probabilities).all() and scores.calibration == ["none"]
    cosine = scorer.cosine(TEXTS, [c for c in scoring.tag_classes(spec)])[:, 0]
    np.testing.assert_allclose(scores.native[:, 0], np.clip(cosine, 0, 1), atol=1e-6)


def test_an_offline_tag_probability_is_its_logistic_calibration_of_the_raw_score():
    scorer = EmbeddingScorer()
    calibration = {"method": "logistic", "a": 0.5, "b": -4.0, "source": "dev"}
    spec = TagSetSpec(
        "custom",
        "multi",
        "zero_shot",
        (TagSpec("billing", "billing", "Charges.", calibration={"embedding": calibration}),),
    )
    scores = score_tag_set(TEXTS, spec, scorer)
    expected = apply_logistic_calibration(scores.features[:, 0], calibration)
    np.testing.assert_allclose(scores.probabilities[:, 0], expected)
    assert not np.allclose(scores.probabilities[:, 0], scores.native[:, 0], atol=0.05)
    assert scores.calibration == ["dev"]


def test_logistic_calibration_needs_both_classes_and_lowers_the_error_of_a_miscalibrated_score():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    raw = 0.3 + 0.1 * labels + rng.normal(0, 0.05, 400)  # cosines: all far below 1, positives a bit higher
    fit = fit_logistic_calibration(raw, labels)
    assert fit["ece_after"] < 0.06 < fit["ece_before"]
    with pytest.raises(ValueError, match="positive and negative"):
        fit_logistic_calibration(raw[labels == 1], labels[labels == 1])


@pytest.mark.django_db
def test_score_tags_stores_one_prediction_per_ticket_and_tag_once(tiny_nli, settings):
    from mlops.inference.nli import NLIScorer

    create_tag_set(
        "Topics",
        tags=[{"name": "billing", "hypothesis": "This ticket is about a charge on a card."}, {"name": "login"}],
    )
    urgency = create_tag_set("Urgency", kind="single", tags=[{"name": "low"}, {"name": "high"}])
    tickets = [Ticket.objects.create(subject=t[:40], body=t) for t in TEXTS]
    scorer = NLIScorer(tiny_nli, backend="torch", dtype="float32")
    first = score_tags(tickets, scorer=scorer)
    again = score_tags(tickets, scorer=scorer)
    assert TagPrediction.objects.count() == len(tickets) * 4
    assert {k: sorted(p.pk for p in v) for k, v in first.items()} == {
        k: sorted(p.pk for p in v) for k, v in again.items()
    }
    for ticket in tickets:  # a single-label set shows at most one tag
        assert TagPrediction.objects.filter(ticket=ticket, tag__tag_set=urgency, is_set=True).count() <= 1
    set_tag_calibration(
        urgency.tags.get(slug="high"), "nli", {"method": "logistic", "a": 2.0, "b": 0.0, "source": "labels"}
    )
    score_tags(tickets, scorer=scorer)  # a new calibration is a new version: new rows, the old kept
    assert TagPrediction.objects.count() == len(tickets) * 6
