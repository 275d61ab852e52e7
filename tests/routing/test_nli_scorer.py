"""The NLI scorer gives the zero-shot pipeline's scores, faster, and refuses bad input clearly."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from mlops.inference.encoders import ModelUnavailable
from mlops.inference.nli import NLIConfigError, NLIScorer, nli_label_indices
from mlops.inference.scorers import ClassSpec, InvalidInput, head_tail_ids

TEXTS = [
    "My card was declined twice!",
    "password reset please, my account is locked",
    "where is my parcel? the order is late",
    "Hello, can you help me with a refund for this invoice?",
]
LABELS = ["billing", "sign in", "delivery", "refund"]


@functools.cache
def _pipeline(path: str):
    from transformers import pipeline

    return pipeline("zero-shot-classification", model=path, tokenizer=path, device="cpu")


@functools.cache
def _scorer(path: str, **kwargs) -> NLIScorer:
    return NLIScorer(path, **kwargs)


def pipeline_scores(path: str, texts, labels, *, template="This ticket is about {}.", multi_label=False) -> np.ndarray:
    rows = []
    for text in texts:
        out = _pipeline(path)(
            text, candidate_labels=list(labels), hypothesis_template=template, multi_label=multi_label
        )
        rows.append([out["scores"][out["labels"].index(label)] for label in labels])
    return np.array(rows)


def classes(labels, **kwargs) -> list[ClassSpec]:
    return [ClassSpec(label, label, **kwargs) for label in labels]


@pytest.mark.parametrize("model", ["bert", "deberta"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_scores_equal_the_zero_shot_pipeline(nli_models, model, multi_label):
    path = nli_models[model]
    ours = _scorer(path).score(TEXTS, classes(LABELS), multi_label=multi_label)
    theirs = pipeline_scores(path, TEXTS, LABELS, multi_label=multi_label)
    assert ours.shape == (len(TEXTS), len(LABELS))
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    assert np.ptp(ours) > 0.2  # far from uniform: a wrong index or softmax axis would not pass
    if not multi_label:
        np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-6)


def test_entailment_and_contradiction_come_from_the_config_labels_whatever_their_order_and_case(nli_models):
    assert (_scorer(nli_models["bert"]).entailment_id, _scorer(nli_models["bert"]).contradiction_id) == (0, 2)
    assert (_scorer(nli_models["deberta"]).entailment_id, _scorer(nli_models["deberta"]).contradiction_id) == (2, 0)
    assert nli_label_indices({"0": "Not_Entailment", "1": "Entailment"}) == (1, 0)


def test_a_custom_template_gives_the_pipelines_scores(nli_models):
    path = nli_models["deberta"]
    scorer = NLIScorer(path, template="The customer needs help with {}.")
    ours = scorer.score(TEXTS, classes(LABELS))
    theirs = pipeline_scores(path, TEXTS, LABELS, template="The customer needs help with {}.")
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    assert not np.allclose(ours, _scorer(path).score(TEXTS, classes(LABELS)), atol=1e-3)


@pytest.mark.parametrize("multi_label", [False, True])
def test_a_hypothesis_per_class_gives_the_pipelines_scores_for_those_sentences(nli_models, multi_label):
    path = nli_models["bert"]
    hypotheses = ["The customer was charged wrongly.", "The customer cannot log in.", "A parcel is late."]
    specs = [
        ClassSpec(slug, slug, hypothesis=h)
        for slug, h in zip(["billing", "login", "delivery"], hypotheses, strict=True)
    ]
    ours = _scorer(path).score(TEXTS, specs, multi_label=multi_label)
    theirs = pipeline_scores(path, TEXTS, hypotheses, template="{}", multi_label=multi_label)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_a_class_hypothesis_with_braces_takes_the_class_name(nli_models):
    path = nli_models["bert"]
    specs = [ClassSpec("b", "billing", hypothesis="It is a {} question."), ClassSpec("d", "delivery")]
    ours = _scorer(path).score(TEXTS[:2], specs)
    mixed = np.array(
        [
            pipeline_scores(path, [t], ["It is a billing question.", "This ticket is about delivery."], template="{}")[
                0
            ]
            for t in TEXTS[:2]
        ]
    )
    np.testing.assert_allclose(ours, mixed, atol=1e-4, rtol=0)


def test_one_class_is_judged_on_its_own_as_the_pipeline_does(nli_models):
    path = nli_models["deberta"]
    ours = _scorer(path).score(TEXTS, classes(["billing"]))
    np.testing.assert_allclose(ours, pipeline_scores(path, TEXTS, ["billing"]), atol=1e-4, rtol=0)


def test_batching_and_order_do_not_change_scores(nli_models):
    path = nli_models["deberta"]
    one_by_one = NLIScorer(path, batch_size=1).score(TEXTS, classes(LABELS))
    together = NLIScorer(path, batch_size=64).score(TEXTS, classes(LABELS))
    reversed_ = NLIScorer(path, batch_size=3).score(TEXTS[::-1], classes(LABELS))[::-1]
    np.testing.assert_allclose(one_by_one, together, atol=1e-5)
    np.testing.assert_allclose(reversed_, together, atol=1e-5)


def test_logits_are_the_entailment_logits_whose_softmax_is_the_score(nli_models):
    scorer = _scorer(nli_models["bert"])
    logits = scorer.logits(TEXTS, classes(LABELS))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), scorer.score(TEXTS, classes(LABELS)), atol=1e-9)


LONG = "my card was declined " * 30 + "where is my parcel"


def test_text_beyond_the_model_length_with_head_truncation_equals_the_pipeline(nli_models):
    path = nli_models["short"]
    scorer = NLIScorer(path, truncation="head")
    ours = scorer.score([LONG, TEXTS[0]], classes(LABELS))
    np.testing.assert_allclose(ours, pipeline_scores(path, [LONG, TEXTS[0]], LABELS), atol=1e-4, rtol=0)


def test_text_beyond_the_model_length_keeps_its_head_and_tail_by_default(nli_models):
    scorer = NLIScorer(nli_models["short"])
    ids, _ = scorer._encode_pairs([LONG], ["This ticket is about billing."], classes(["billing"]))
    tokens = scorer.tokenizer.convert_ids_to_tokens(ids[0])
    assert len(ids[0]) == scorer.max_length == 32
    assert tokens[:3] == ["[CLS]", "my", "card"]
    premise = tokens[1 : tokens.index("[SEP]")]
    assert premise[-3:] == ["is", "my", "parcel"]  # the tail survived
    assert not np.allclose(
        scorer.score([LONG], classes(LABELS)),
        NLIScorer(nli_models["short"], truncation="head").score([LONG], classes(LABELS)),
    )


def test_head_tail_ids_keeps_the_start_and_the_end():
    assert head_tail_ids(list(range(10)), 4, head_fraction=0.5) == [0, 1, 8, 9]
    assert head_tail_ids(list(range(3)), 4) == [0, 1, 2]


def test_a_hypothesis_too_long_for_the_model_is_refused(nli_models):
    scorer = NLIScorer(nli_models["short"])
    long_hypothesis = "This ticket is about " + "billing and delivery " * 20
    with pytest.raises(InvalidInput, match="hypothesis of class 'x' is .* tokens"):
        scorer.score(["hello"], [ClassSpec("x", "x", hypothesis=long_hypothesis)])


def test_a_config_without_an_entailment_label_is_a_clear_error(nli_models):
    with pytest.raises(NLIConfigError, match="no single 'entailment' label"):
        NLIScorer(nli_models["no-entailment"])


def test_a_model_that_is_not_there_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailable, match=r"NLI model '.*nowhere' could not be loaded \("):
        NLIScorer(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    ("texts", "specs", "message"),
    [
        ([""], classes(LABELS), "text 0 is empty"),
        (["ok", "  \n\t "], classes(LABELS), "text 1 is empty or only whitespace"),
        ("one string", classes(LABELS), "list of strings"),
        (["ok"], [], "no classes"),
        (["ok"], [ClassSpec("a", "Billing"), ClassSpec("b", " billing ")], "duplicate class name"),
        (["ok"], [ClassSpec("a", "x"), ClassSpec("a", "y")], "duplicate class 'a'"),
    ],
)
def test_bad_input_is_refused_before_the_model_runs(nli_models, texts, specs, message):
    with pytest.raises(InvalidInput, match=message):
        _scorer(nli_models["bert"]).score(texts, specs)


def test_empty_class_names_and_templates_without_braces_are_refused(nli_models):
    with pytest.raises(InvalidInput, match="empty name"):
        ClassSpec("a", "  ")
    with pytest.raises(InvalidInput, match="has no {} where the class name goes"):
        NLIScorer(nli_models["bert"], template="This ticket is about billing.")
    with pytest.raises(InvalidInput, match="cannot be filled"):
        NLIScorer(nli_models["bert"], template="About {} and {team}.")
