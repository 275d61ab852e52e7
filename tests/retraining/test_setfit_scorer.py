"""The SetFit scorer: a saved model behind ``score(texts, classes)``, classes matched by slug, hybrid."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.inference.encoders import ModelUnavailable
from mlops.inference.offline_scorers import EmbeddingScorer
from mlops.inference.scorers import BaseScorer, ClassSpec, softmax
from mlops.inference.setfit_scorer import SetFitScorer, clear_cache, get_setfit_scorer

A, B, C = (ClassSpec(s, n) for s, n in [("queue-a", "Queue A"), ("queue-b", "Queue B"), ("queue-c", "Queue C")])
LEGAL = ClassSpec("legal", "Legal", "Data protection: GDPR requests to delete or export personal data, lawyers.")
TEXTS = ["You charged my card twice for one order", "My parcel never arrived", "The password reset mail is missing"]


class FixedScorer(BaseScorer):
    """A zero-shot stand-in with known outputs, so the blending arithmetic can be checked exactly."""

    name = "fixed"

    def __init__(self, by_slug: dict[str, float]) -> None:
        self.by_slug = by_slug
        self.calls = 0

    def _logits(self, texts, classes):
        self.calls += 1
        return np.log(np.array([[self.by_slug[c.slug] for c in classes] for _ in texts]))


@pytest.fixture(scope="module")
def scorer(trained_model_dir):
    return SetFitScorer(trained_model_dir, version="t-1", zero_shot=FixedScorer({}))


def test_it_routes_tickets_to_the_teams_it_learnt(scorer):
    probabilities = scorer.score(TEXTS, [A, B, C])
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities.argmax(axis=1).tolist() == [0, 1, 2]


def test_it_maps_columns_by_slug_whatever_the_order_of_the_classes(scorer):
    forward = scorer.score(TEXTS, [A, B, C])
    backward = scorer.score(TEXTS, [C, A, B])
    np.testing.assert_allclose(backward, forward[:, [2, 0, 1]], atol=1e-9)


def test_logits_are_log_probabilities_so_a_temperature_rescales_them(scorer):
    logits = scorer.logits(TEXTS, [A, B, C])
    np.testing.assert_allclose(softmax(logits, axis=1), scorer.score(TEXTS, [A, B, C]), atol=1e-9)
    softened = softmax(logits / 3.0, axis=1)
    assert (softened.max(axis=1) < scorer.score(TEXTS, [A, B, C]).max(axis=1)).all()


def test_teams_it_was_not_trained_on_get_the_zero_shot_share_and_the_rest_is_split_by_setfit(trained_model_dir):
    # zero-shot gives the untrained "legal" 0.3 of every ticket: SetFit splits the other 0.7.
    zero_shot = FixedScorer({"queue-a": 0.5, "queue-b": 0.2, "legal": 0.3})
    hybrid = SetFitScorer(trained_model_dir, version="t-1", zero_shot=zero_shot)
    setfit_only = hybrid.score(TEXTS, [A, B])
    blended = hybrid.score(TEXTS, [A, B, LEGAL])
    np.testing.assert_allclose(blended[:, 2], 0.3)
    np.testing.assert_allclose(blended[:, :2], 0.7 * setfit_only, atol=1e-9)
    np.testing.assert_allclose(blended.sum(axis=1), 1.0)


def test_it_does_not_run_the_zero_shot_scorer_when_it_knows_every_class(trained_model_dir):
    zero_shot = FixedScorer({})
    scorer = SetFitScorer(trained_model_dir, version="t-1", zero_shot=zero_shot)
    scorer.score(TEXTS, [A, B, C])
    assert zero_shot.calls == 0


def test_a_class_dropped_since_training_gives_its_mass_to_the_others(scorer):
    all_three = scorer.score(TEXTS, [A, B, C])
    two = scorer.score(TEXTS, [A, B])
    np.testing.assert_allclose(two, all_three[:, :2] / all_three[:, :2].sum(axis=1, keepdims=True), atol=1e-9)


def test_with_the_real_embedding_scorer_a_new_team_with_a_clear_description_gets_its_tickets(trained_model_dir):
    # The learnt queues have opaque names; the zero-shot scorer compares tickets with their saved examples.
    scorer = SetFitScorer(trained_model_dir, version="t-1", zero_shot=EmbeddingScorer())
    gdpr = "Under GDPR please delete all the personal data you hold about me"
    probabilities = scorer.score([gdpr, TEXTS[1]], [A, B, C, LEGAL])
    assert probabilities[0].argmax() == 3
    assert probabilities[1].argmax() == 1


def test_long_tickets_keep_their_head_and_tail(scorer):
    log = "\n".join(f"2026-11-25 12:00:{i:02d} DEBUG worker heartbeat ok" for i in range(400))
    text = f"My parcel never arrived.\n{log}\nPlease send the parcel again, it never arrived."
    assert scorer.score([text], [A, B, C]).argmax() == 1


def test_the_cache_loads_each_version_once(trained_model_dir):
    clear_cache()
    first = get_setfit_scorer(trained_model_dir, "t-1")
    assert get_setfit_scorer(trained_model_dir, "t-1") is first
    assert get_setfit_scorer(trained_model_dir, "t-2") is not first
    clear_cache()


def test_a_directory_without_a_trained_model_is_reported(tmp_path):
    with pytest.raises(ModelUnavailable, match="no trained SetFit model"):
        SetFitScorer(tmp_path)


def test_the_zero_shot_scorer_sees_the_learnt_teams_with_their_training_tickets(trained_model_dir):
    seen = []

    class Recording(FixedScorer):
        def _logits(self, texts, classes):
            seen.extend(classes)
            return super()._logits(texts, classes)

    SetFitScorer(trained_model_dir, zero_shot=Recording({"queue-a": 0.6, "legal": 0.4})).score(TEXTS[:1], [A, LEGAL])
    assert len(seen[0].examples) == 6 and "I was charged twice for the same order this month" in seen[0].examples
    assert seen[1].examples == ()


def test_it_describes_itself_for_the_registry(scorer):
    described = scorer.describe()
    assert described["scorer"] == "setfit"
    assert described["labels"] == ["queue-a", "queue-b", "queue-c"]
    assert scorer.version == "t-1"
