"""Self-training on the unlabeled stream (``mlops.selftraining``): what it keeps, what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.selftraining import (
    NotEnoughTickets,
    SelfTrainedHead,
    SelfTrainingConfig,
    SelfTrainingError,
    WrongLanguage,
    dedupe,
    fit_head,
    prepare_stream,
    select_pseudo_labels,
)

NO_LANGUAGE_CHECK = SelfTrainingConfig(language="")


def clusters(rng: np.random.Generator, centres: np.ndarray, per_class: list[int], spread: float = 0.2):
    """Unit vectors scattered around each centre; the true class of each row (for the tests' eyes only)."""
    rows, truth = [], []
    for c, n in enumerate(per_class):
        points = centres[c] + spread * rng.standard_normal((n, centres.shape[1]))
        rows.append(points / np.linalg.norm(points, axis=1, keepdims=True))
        truth += [c] * n
    return np.vstack(rows), np.array(truth)


@pytest.fixture
def space():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((4, 16))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # What the admin wrote about each class sits near, not on, the class's tickets.
    described = centres + 0.4 * rng.standard_normal(centres.shape)
    described /= np.linalg.norm(described, axis=1, keepdims=True)
    return rng, centres, described


def test_duplicates_of_one_ticket_count_once_whatever_their_case_spacing_or_numbers():
    texts = ["Order #1 late", "order  #2 LATE", "Where is my refund?", "order #3 late"]
    assert dedupe(texts) == [0, 2]
    stream = prepare_stream(texts, n_classes=1, config=SelfTrainingConfig(min_tickets_per_class=2, language=""))
    assert stream.texts == ["Order #1 late", "Where is my refund?"] and stream.duplicates_removed == 2


def test_the_stream_is_read_as_asks_so_one_question_in_two_polite_emails_is_one_ticket():
    texts = [
        "Hi team, I hope you're well. Order #1 is late. Thanks in advance, Anna Smith, Office Manager",
        "Hello, order #2 is late. Kind regards, Bob",
        "Where is my refund?",
    ]
    config = SelfTrainingConfig(min_tickets_per_class=2, language="")
    stream = prepare_stream(texts, n_classes=1, config=config)
    assert stream.texts == ["Order #1 is late.", "Where is my refund?"] and stream.duplicates_removed == 1
    as_written = prepare_stream(
        texts, n_classes=1, config=SelfTrainingConfig(min_tickets_per_class=2, language="", read_asks=False)
    )
    assert as_written.texts == texts


def test_a_stream_flooded_by_one_duplicate_is_too_small_and_says_so():
    texts = ["My parcel is late"] * 500 + [f"Question {w} about invoices" for w in "abcdefghij"]
    with pytest.raises(
        NotEnoughTickets, match=r"at least 20 distinct tickets per team \(60 for 3 teams\).*11.*499 duplicates"
    ):
        prepare_stream(texts, n_classes=3, config=NO_LANGUAGE_CHECK)


GERMAN = [
    "Meine Karte wurde abgelehnt, obwohl genug Geld auf dem Konto ist.",
    "Ich habe mein Passwort vergessen und kann mich nicht anmelden.",
    "Wo ist mein Paket? Die Sendungsverfolgung zeigt seit Tagen nichts Neues.",
    "Bitte stornieren Sie meine Bestellung, ich brauche sie nicht mehr.",
    "Warum wurde mir diese Gebühr zweimal berechnet?",
    "Die Rechnung für diesen Monat ist falsch, bitte korrigieren.",
]
ENGLISH = [
    "My card was declined although there is enough money in the account.",
    "I forgot my password and cannot sign in.",
    "Where is my parcel? Tracking has shown nothing new for days.",
    "Please cancel my order, I do not need it any more.",
    "Why was I charged this fee twice?",
    "This month's invoice is wrong, please correct it.",
]
PEOPLE = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas"]


def test_a_stream_in_another_language_is_refused():
    german = [f"{text} {name}" for text in GERMAN for name in PEOPLE]
    with pytest.raises(WrongLanguage, match=r"only \d+% of the stream's tickets read as language 'en'"):
        prepare_stream(german, n_classes=2, config=SelfTrainingConfig(min_tickets_per_class=5))
    english = [f"{text} {name}" for text in ENGLISH for name in PEOPLE]
    assert (
        prepare_stream(english, n_classes=2, config=SelfTrainingConfig(min_tickets_per_class=5)).language_share >= 0.9
    )


def test_each_class_keeps_its_most_confident_share_and_none_floods():
    logits = np.array([[5.0, 0.0], [4.0, 0.0], [3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    idx, labels = select_pseudo_labels(logits, keep_fraction=0.5, max_share=3.0)
    assert idx.tolist() == [0, 1, 2, 6] and labels.tolist() == [0, 0, 0, 1]  # ceil(5/2) of class 0, ceil(2/2) of 1
    idx, labels = select_pseudo_labels(logits, keep_fraction=1.0, max_share=1.0)
    assert np.bincount(labels).tolist() == [4, 2]  # class 0 capped at its fair share ceil(7/2)


def test_the_head_learns_the_stream_better_than_its_teacher_without_reading_a_label(space):
    rng, centres, described = space
    vectors, truth = clusters(rng, centres, [120, 60, 90, 30])
    teacher = 20 * vectors @ described.T
    head, report = fit_head(vectors, teacher, described, ["a", "b", "c", "d"], NO_LANGUAGE_CHECK)
    test, test_truth = clusters(rng, centres, [50, 50, 50, 50])
    teacher_accuracy = ((test @ described.T).argmax(1) == test_truth).mean()
    head_accuracy = (head.logits(test).argmax(1) == test_truth).mean()
    own_accuracy = (head.own_logits(test).argmax(1) == test_truth).mean()  # without the teacher's prior
    assert head_accuracy > teacher_accuracy + 0.04 and own_accuracy > teacher_accuracy + 0.04, (
        teacher_accuracy,
        head_accuracy,
        own_accuracy,
    )
    assert sum(report.pseudo_labels_per_class.values()) == report.n_pseudo_labels > 0 and report.starved == []


def test_a_class_with_no_confident_ticket_is_reported_starved_and_still_known_to_the_head(space):
    rng, centres, described = space
    vectors, _ = clusters(rng, centres[:3], [80, 80, 80])  # nobody writes about what class "d" is for
    described = described.copy()
    described[3] = -centres[:3].mean(axis=0) / np.linalg.norm(centres[:3].mean(axis=0))
    head, report = fit_head(vectors, 20 * vectors @ described.T, described, ["a", "b", "c", "d"], NO_LANGUAGE_CHECK)
    assert "d" in report.starved and report.pseudo_labels_per_class["d"] < 3
    assert head.logits(described[3:4]).argmax() == 3  # its own description still routes to it


def test_two_classes_give_two_columns_and_one_class_is_refused(space):
    rng, centres, described = space
    vectors, truth = clusters(rng, centres[:2], [40, 40])
    head, _ = fit_head(vectors, 20 * vectors @ described[:2].T, described[:2], ["a", "b"], NO_LANGUAGE_CHECK)
    assert head.logits(vectors).shape == (80, 2) and (head.logits(vectors).argmax(1) == truth).mean() > 0.8
    restored = SelfTrainedHead.from_arrays(head.arrays())
    assert restored.classes == ("a", "b") and np.allclose(restored.logits(vectors), head.logits(vectors))
    with pytest.raises(SelfTrainingError, match="two teams"):
        fit_head(vectors, 20 * vectors @ described[:1].T, described[:1], ["a"], NO_LANGUAGE_CHECK)


def test_the_teachers_prior_is_saved_with_the_head_and_weighs_in_when_routing(space):
    rng, centres, described = space
    vectors, _ = clusters(rng, centres, [40, 40, 40, 40])
    classes = ["a", "b", "c", "d"]
    alone, _ = fit_head(
        vectors, 20 * vectors @ described.T, described, classes, SelfTrainingConfig(language="", prior_weight=0)
    )
    with_prior, _ = fit_head(
        vectors, 20 * vectors @ described.T, described, classes, SelfTrainingConfig(language="", prior_weight=0.5)
    )
    np.testing.assert_allclose(alone.logits(vectors), alone.own_logits(vectors))
    assert not np.allclose(with_prior.logits(vectors), with_prior.own_logits(vectors))
    loaded = SelfTrainedHead.from_arrays(with_prior.arrays())
    np.testing.assert_allclose(loaded.logits(vectors), with_prior.logits(vectors))
    assert loaded.prior_weight == 0.5
    # A head saved before the prior existed loads as the head alone.
    old = {k: v for k, v in with_prior.arrays().items() if not k.startswith("prior")}
    np.testing.assert_allclose(SelfTrainedHead.from_arrays(old).logits(vectors), with_prior.own_logits(vectors))


def test_the_prior_weighs_as_much_as_the_share_of_teams_an_admin_described():
    config = SelfTrainingConfig(prior_weight=0.25)
    assert config.with_descriptions([True, True]).prior_weight == 0.25
    assert config.with_descriptions([True, False]).prior_weight == 0.125
    assert config.with_descriptions([False, False]).prior_weight == 0.0


def test_the_language_share_counts_texts_without_letters_as_no_hit_and_is_the_same_every_time():
    from mlops.inference.language import language_share

    texts = ["Where is my parcel? It has not arrived.", "12345", "🙂🙂", "Wo ist mein Paket? Es ist nicht da."]
    assert language_share(texts, "en", ["de"]) == 0.25
    assert language_share(texts, "de", ["en", "fr"]) == 0.25
    russian = ["Где моя посылка? Она не пришла."] * 4
    assert language_share(russian, "en", ["de", "fr"]) == 0.0  # another script: read as none of them
    many = texts * 50
    assert language_share(many, "en", ["de"], sample=40, seed=3) == language_share(
        many, "en", ["de"], sample=40, seed=3
    )
