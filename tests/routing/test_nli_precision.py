"""The NLI router picks its runtime and precision per machine and records the choice and its agreement."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mlops.inference import encoders
from mlops.inference.encoders import ModelUnavailable
from mlops.inference.nli import PROBE_HYPOTHESES, PROBE_TEXTS, NLIScorer, choose_runtime
from mlops.inference.scorers import ClassSpec

TEXTS = [
    "My card was declined twice!",
    "password reset please, my account is locked",
    "where is my parcel? the order is late " * 12,  # longer than the short model: truncated head and tail
    "Hello, can you help me with a refund for this invoice?",
]
CLASSES = [ClassSpec(label, label) for label in ("billing", "sign in", "delivery", "refund")]


@pytest.fixture
def cpu_without_bfloat16(monkeypatch):
    monkeypatch.setattr(encoders, "cpu_computes_bfloat16", lambda: False)


@pytest.mark.parametrize("model", ["bert", "deberta", "short"])
def test_the_float32_onnx_export_gives_torch_float32s_scores(nli_models, model, tmp_path):
    torch_scorer = NLIScorer(nli_models[model], backend="torch", dtype="float32")
    onnx_scorer = NLIScorer(nli_models[model], backend="onnx", cache_dir=tmp_path)
    assert onnx_scorer.model is None, "onnxruntime holds the weights; torch's copy is dropped"
    for multi_label in (False, True):
        np.testing.assert_allclose(
            onnx_scorer.score(TEXTS, CLASSES, multi_label=multi_label),
            torch_scorer.score(TEXTS, CLASSES, multi_label=multi_label),
            atol=1e-5,
        )
    assert list(tmp_path.glob("nli-*.onnx")), "the export is cached in cache_dir"


def test_auto_on_a_cpu_without_bfloat16_serves_the_float32_export_and_records_its_agreement(
    nli_models, tmp_path, cpu_without_bfloat16
):
    scorer = NLIScorer(nli_models["deberta"], device="cpu", cache_dir=tmp_path)
    assert (scorer.runtime, scorer.dtype) == ("onnx", "float32")
    assert scorer.version.endswith("/onnx-float32")
    described = scorer.describe()
    assert described["runtime"] == "onnx-float32"
    agreement = described["measured"]["agreement_with_float32"]
    assert agreement["probe_pairs"] == len(PROBE_TEXTS) * len(PROBE_HYPOTHESES)
    assert agreement["same_ranking"] and agreement["max_abs_score_difference"] <= 1e-5


def test_auto_on_a_cpu_that_computes_bfloat16_serves_torch_in_bfloat16(nli_models, monkeypatch):
    monkeypatch.setattr(encoders, "cpu_computes_bfloat16", lambda: True)
    scorer = NLIScorer(nli_models["bert"], device="cpu")
    assert (scorer.runtime, scorer.dtype) == ("torch", "bfloat16")
    assert scorer.version.endswith("/torch-bfloat16")
    assert next(scorer.model.parameters()).dtype.is_floating_point
    assert str(next(scorer.model.parameters()).dtype) == "torch.bfloat16"
    agreement = scorer.describe()["measured"]["agreement_with_float32"]
    # bfloat16 keeps ~3 significant digits: close to float32, not equal to it.
    assert 0 < agreement["max_abs_score_difference"] < 0.05


def test_the_measured_agreement_is_recorded_but_does_not_change_the_configuration_hash(nli_models, tmp_path):
    scorer = NLIScorer(nli_models["bert"], backend="onnx", cache_dir=tmp_path)
    before = scorer.config_hash
    scorer.measured = {"agreement_with_float32": {"max_abs_score_difference": 1.0}}
    assert scorer.config_hash == before
    scorer.dtype = "int8"
    assert scorer.config_hash != before, "the runtime is part of the configuration"


def test_int8_serves_only_when_it_keeps_the_float32_ranking_of_the_probe_pairs(nli_models, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mlops.inference.nli"):
        scorer = NLIScorer(nli_models["deberta"], dtype="int8", cache_dir=tmp_path)
    agreement = scorer.describe()["measured"]["agreement_with_float32"]
    assert agreement["same_ranking"], "whatever serves ranks the probe pairs as float32 does"
    if scorer.dtype == "int8":
        assert scorer.version.endswith("/onnx-int8") and not caplog.records
    else:
        assert scorer.version.endswith("/onnx-float32")
        assert "changes the float32 ranking" in caplog.text


def test_a_runtime_that_cannot_run_the_precision_is_a_clear_error():
    assert choose_runtime("auto", "bfloat16", "cpu") == ("torch", "bfloat16")
    assert choose_runtime("torch", "auto", "cpu")[0] == "torch"
    with pytest.raises(ModelUnavailable, match="unknown NLI backend"):
        choose_runtime("tensorrt", "auto", "cpu")
    with pytest.raises(ModelUnavailable, match="unknown NLI dtype"):
        choose_runtime("auto", "fp8", "cpu")
    with pytest.raises(ModelUnavailable, match="float32 or int8 on the CPU"):
        choose_runtime("onnx", "auto", "cuda")
    with pytest.raises(ModelUnavailable, match="float32 or int8 on the CPU"):
        choose_runtime("torch", "int8", "cpu")
