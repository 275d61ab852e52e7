"""The packaged cross-encoder on each backend: ONNX int8 as shipped, its weights as a float32 ONNX graph,
and its weights dequantized on torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from mlops.inference import encoders, onnx_graphs
from mlops.inference.encoders import PACKAGED_RERANKER, CrossEncoder, ModelUnavailable

QUERY = "I was charged twice for my subscription this month, please refund one of the charges"
PASSAGES = [
    "Request a refund for a subscription charge. If you were charged for a renewal you did not want, ask for "
    "a refund within 14 days of the charge.",
    "Duplicate charges. A second charge of the same amount is usually a pending authorisation that drops off "
    "within three days; if both charges settle, we refund one.",
    "Reset your password. Tap Forgot password? on the sign-in screen and enter your email.",
    "Track your order. Every order gets a tracking number by email once it ships.",
    "Device shows Offline in the app. A blinking orange light means the camera lost its Wi-Fi connection.",
    "Change your billing address in Settings > Subscription > Payment method.",
    "Cancel a subscription before it renews to avoid being charged for the next period.",
    "Our opening hours are 9 to 5, Monday to Friday.",
]
PAIRS = [(QUERY, p) for p in PASSAGES]


@pytest.fixture(scope="module")
def float32():
    return CrossEncoder(PACKAGED_RERANKER, backend="torch", dtype="float32")


@pytest.fixture(scope="module")
def int8_onnx():
    return CrossEncoder(PACKAGED_RERANKER, dtype="int8")


def test_the_dequantized_weights_score_like_the_int8_export(float32, int8_onnx):
    exact, shipped = float32.predict(PAIRS), int8_onnx.predict(PAIRS)
    # The export also quantizes activations at run time, so logits differ a little, not the ranking's head.
    assert np.corrcoef(exact, shipped)[0, 1] > 0.98
    assert np.argmax(exact) == np.argmax(shipped)
    assert set(np.argsort(-exact)[:2]) == {0, 1}
    assert exact[2:5].max() < -5  # password, shipping and offline passages are irrelevant


def test_the_float32_onnx_graph_scores_like_the_dequantized_torch_model(float32, int8_onnx):
    graph = CrossEncoder(PACKAGED_RERANKER, backend="onnx")
    assert (graph.info.backend, graph.impl.dtype) == ("onnx", "float32")
    assert graph.version.endswith("/onnx-float32") and int8_onnx.version.endswith("/onnx-int8")
    exact = float32.predict(PAIRS)
    np.testing.assert_allclose(graph.predict(PAIRS), exact, atol=1e-4)
    np.testing.assert_allclose(graph.predict(PAIRS[::-1], batch_size=3)[::-1], exact, atol=1e-4)
    # the int8 graph is a different computation (activations quantized), not the same one
    assert np.abs(int8_onnx.predict(PAIRS) - exact).max() > 1e-3


def test_the_float32_graph_has_no_quantized_operators_left():
    import onnx

    path = Path(encoders.resolve_model_ref(PACKAGED_RERANKER)) / "model.onnx"
    ops = {n.op_type for n in onnx.load_from_string(onnx_graphs.float32_graph_from_dynamic_int8(path)).graph.node}
    assert "MatMul" in ops
    assert not ops & {"MatMulInteger", "DynamicQuantizeLinear"}


def test_bfloat16_ranks_like_float32(float32):
    bf16 = CrossEncoder(PACKAGED_RERANKER, backend="torch", dtype="bfloat16")
    exact, half = float32.predict(PAIRS), bf16.predict(PAIRS)
    assert list(np.argsort(-half)) == list(np.argsort(-exact))
    assert np.abs(half - exact).max() < 0.25
    assert bf16.version.endswith("/torch-bfloat16") and float32.version.endswith("/torch-float32")


def test_scores_do_not_depend_on_batching_or_order(float32):
    whole = float32.predict(PAIRS, batch_size=32)
    ones = float32.predict(PAIRS, batch_size=1)
    reversed_ = float32.predict(PAIRS[::-1], batch_size=3)[::-1]
    np.testing.assert_allclose(ones, whole, atol=1e-4)
    np.testing.assert_allclose(reversed_, whole, atol=1e-4)
    assert float32.predict([]).shape == (0,)


def test_batches_are_length_sorted_and_capped_in_tokens(float32):
    encodings = float32.impl.tokenizer.encode_batch([(QUERY, p * n) for n, p in enumerate(PASSAGES, start=1)])
    batches = list(
        encoders.padded_batches(
            [e.ids for e in encodings], [e.type_ids for e in encodings], batch_size=4, max_batch_tokens=600
        )
    )
    seen = sorted(int(i) for idx, _ in batches for i in idx)
    assert seen == list(range(len(PASSAGES)))
    widths = [feed["input_ids"].shape[1] for _, feed in batches]
    assert widths == sorted(widths)
    for idx, feed in batches:
        assert len(idx) <= 4
        assert feed["input_ids"].size <= 600 or len(idx) == 1
        assert feed["attention_mask"].sum(axis=1).max() == feed["input_ids"].shape[1]


def test_auto_uses_bfloat16_torch_only_where_the_cpu_computes_it(monkeypatch):
    monkeypatch.setattr(encoders, "cpu_computes_bfloat16", lambda: False)
    plain = CrossEncoder(PACKAGED_RERANKER, device="cpu")
    assert (plain.info.backend, plain.impl.dtype) == ("onnx", "float32")
    monkeypatch.setattr(encoders, "cpu_computes_bfloat16", lambda: True)
    native = CrossEncoder(PACKAGED_RERANKER, device="cpu")
    assert (native.info.backend, native.impl.dtype) == ("torch", "bfloat16")
    assert native.version != plain.version


def test_unknown_backends_and_precisions_are_refused(settings, monkeypatch):
    with pytest.raises(ModelUnavailable, match="unknown cross-encoder backend"):
        CrossEncoder(PACKAGED_RERANKER, backend="tensorrt")
    with pytest.raises(ModelUnavailable, match="unknown dtype"):
        CrossEncoder(PACKAGED_RERANKER, backend="torch", dtype="int4")
    with pytest.raises(ModelUnavailable, match="int8.*onnx backend"):
        CrossEncoder(PACKAGED_RERANKER, backend="torch", dtype="int8")
    with pytest.raises(ModelUnavailable, match="onnx backend runs float32 or int8"):
        CrossEncoder(PACKAGED_RERANKER, backend="onnx", dtype="bfloat16")
    monkeypatch.setenv("TRIAGE_RERANKER_DTYPE", "fp8")
    from config.settings import env_choice

    with pytest.raises(ImproperlyConfigured, match="TRIAGE_RERANKER_DTYPE must be one of"):
        env_choice("TRIAGE_RERANKER_DTYPE", "auto", ("auto", "float32", "bfloat16", "float16", "int8"))


def test_an_onnx_file_that_is_not_a_quantized_bert_is_refused_on_torch(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "model.onnx")
    with pytest.raises(ModelUnavailable):
        onnx_graphs.dequantized_bert_from_onnx(tmp_path / "model.onnx")
    with pytest.raises(ModelUnavailable, match="not a dynamic-int8 export"):
        onnx_graphs.float32_graph_from_dynamic_int8(tmp_path / "model.onnx")
    with pytest.raises(ModelUnavailable, match="not a dynamic-int8 export"):
        encoders.CrossEncoderONNX(str(tmp_path), dtype="int8")
