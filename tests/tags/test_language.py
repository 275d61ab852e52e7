"""Language tags come from lingua restricted to the configured languages; another language gets none."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.inference.language import LanguageDetector
from mlops.inference.scorers import InvalidInput
from tags.models import TagPrediction
from tags.scoring import score_tags
from tags.services import create_tag_set
from triage.models import Ticket

TICKETS = {
    "en": "Hello, my thermostat has been offline since yesterday, can you help?",
    "de": "Hallo, mein Thermostat ist seit gestern offline. Können Sie mir helfen?",
    "fr": "Bonjour, mon thermostat est hors ligne depuis hier. Pouvez-vous m'aider ?",
    "es": "Hola, mi termostato está desconectado desde ayer. ¿Me podéis ayudar?",
}
PORTUGUESE = "Olá, o meu termóstato está desligado desde ontem e a minha casa está fria. Podem ajudar?"


def test_it_detects_each_configured_language_and_leaves_another_to_other():
    detector = LanguageDetector(["en", "de", "fr", "es"], others=["pt", "it"])
    probs = detector.probabilities([*TICKETS.values(), PORTUGUESE])
    assert probs.shape == (5, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert list(probs[:4, :4].argmax(axis=1)) == [0, 1, 2, 3]
    assert probs[4].argmax() == 4  # "other": not one of ours


def test_an_unknown_language_code_is_refused():
    with pytest.raises(InvalidInput, match="ISO 639-1"):
        LanguageDetector(["en", "xx"])


@pytest.mark.django_db
def test_score_tags_sets_the_language_tag_and_none_for_an_unsupported_language(settings):
    settings.TRIAGE_TAG_OTHER_LANGUAGES = ["pt", "it"]
    create_tag_set(
        "Language",
        kind="single",
        method="language",
        tags=[{"slug": code, "name": code.upper()} for code in TICKETS],
    )
    tickets = {code: Ticket.objects.create(subject="Thermostat", body=text) for code, text in TICKETS.items()}
    other = Ticket.objects.create(subject="Termóstato", body=PORTUGUESE)
    score_tags([*tickets.values(), other])
    for code, ticket in tickets.items():
        shown = TagPrediction.objects.filter(ticket=ticket, is_set=True).values_list("tag__slug", flat=True)
        assert list(shown) == [code]
    assert not TagPrediction.objects.filter(ticket=other, is_set=True).exists()
    assert TagPrediction.objects.filter(ticket=other).count() == 4  # scored, all below their threshold


def test_the_configured_mode_decides_and_one_detector_serves_each_process(settings):
    from mlops.inference.language import get_language_detector

    settings.TRIAGE_LANGUAGE_ACCURACY = "low"
    low = get_language_detector(["en", "de"], ["pt"])
    assert low is get_language_detector(["EN", "de"], ["pt"])  # built once, models loaded with it
    assert low.low_accuracy and "-low:" in low.version
    settings.TRIAGE_LANGUAGE_ACCURACY = "high"
    high = get_language_detector(["en", "de"], ["pt"])
    assert not high.low_accuracy and high is not low
    # Both read a short ticket the same way; the version a prediction stores says which mode read it.
    short = ["Where is my invoice?", "Wo ist meine Rechnung?"]
    assert list(low.probabilities(short)[:, :2].argmax(axis=1)) == list(high.probabilities(short)[:, :2].argmax(axis=1))


@pytest.mark.django_db
def test_worker_start_builds_the_detector_of_each_active_language_set(settings):
    from mlops.inference import language
    from mlops.inference.warm import WARMERS
    from tags.scoring import warm_tag_scorers

    assert warm_tag_scorers in WARMERS  # run by warm_all() in the inference process
    settings.TRIAGE_TAG_OTHER_LANGUAGES = ["nl"]
    create_tag_set("Language", kind="multi", method="language", tags=[{"slug": "fr", "name": "French"}])
    language._detectors.clear()
    warm_tag_scorers()
    assert [key[:2] for key in language._detectors] == [(("fr",), ("nl",))]
