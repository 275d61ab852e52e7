"""ONNX graph work for the packaged int8 cross-encoder: sessions, rewriting, dequantizing.

* ``float32_graph_from_dynamic_int8`` — the dynamically quantized export rewritten as a float32 graph
  of the same weights (what onnxruntime runs on CPUs without bfloat16);
* ``dequantized_bert_from_onnx`` — the same weights dequantized exactly into a torch BERT (bfloat16 on
  CPUs and GPUs that compute it);
* ``onnx_session`` — an onnxruntime CPU session with every graph optimisation;
* ``export_onnx`` / ``quantize_int8`` — a torch sequence classifier (the NLI model) exported once per
  weights as a float32 graph, and its dynamically quantized int8 version.

``mlops.inference.encoders`` (the public encoder API) and ``mlops.inference.nli`` use these.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .encoders import ModelUnavailable

ONNX_OPSET = 17


def onnx_session(graph: str | bytes, *, threads: int | None = None):
    """An onnxruntime CPU session on a model file or serialized graph, with every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


@functools.cache
def is_dynamic_int8(model_file: Path) -> bool:
    """Whether an ONNX export quantizes dynamically to int8; read once per file (loading reads the weights)."""
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    return any(node.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for node in graph.node)


def float32_graph_from_dynamic_int8(model_file: Path) -> bytes:
    """A dynamically quantized ONNX export rewritten as a float32 graph of the same weights (serialized).

    Every ``DynamicQuantizeLinear`` → ``MatMulInteger`` → ``Cast`` → ``Mul`` chain becomes one float
    ``MatMul`` on the weight dequantized exactly, ``(q - zero_point) * scale``; the embedding tables
    stay int8 and are dequantized row by row as in the export. Activations are no longer quantized, so
    the scores are the float model's (those of ``dequantized_bert_from_onnx`` on torch, to ~1e-5) and
    no longer depend on which pairs share a batch. Raises ``ModelUnavailable`` on any other graph.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_file))
    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(init[name])

    def sole_consumer(name: str, op_type: str):
        users = consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type:
            raise ModelUnavailable(f"{model_file}: {name!r} does not feed one {op_type}: not a dynamic-int8 export")
        return users[0]

    nodes, replaced, weights = [], set(), {}
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            nodes.append(node)
            continue
        a_quantized, w_quantized, _, w_zero_point = node.input
        quantize = producer.get(a_quantized)
        base = w_quantized.removesuffix("_quantized")
        if quantize is None or quantize.op_type != "DynamicQuantizeLinear" or f"{base}_scale" not in init:
            raise ModelUnavailable(f"{model_file}: {node.name!r} is not a dynamically quantized MatMul on a weight")
        cast = sole_consumer(node.output[0], "Cast")
        rescale = sole_consumer(cast.output[0], "Mul")
        replaced.update((id(cast), id(rescale)))
        q = array(w_quantized).astype(np.float32)
        weights[f"{base}_float"] = (q - array(w_zero_point).astype(np.float32)) * array(f"{base}_scale")
        nodes.append(
            helper.make_node("MatMul", [quantize.input[0], f"{base}_float"], [rescale.output[0]], name=node.name)
        )
    nodes = [n for n in nodes if id(n) not in replaced]
    graph_outputs = {o.name for o in graph.output}
    while True:  # drop what nothing reads any more: the activation quantizers and their scale products
        read = {name for n in nodes for name in n.input} | graph_outputs
        kept = [n for n in nodes if any(o in read for o in n.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    if not weights or any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in nodes):
        raise ModelUnavailable(f"{model_file}: not a dynamic-int8 export")
    read = {name for n in nodes for name in n.input}
    initializers = [i for i in graph.initializer if i.name in read]
    initializers += [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def dequantized_bert_from_onnx(model_file: Path):
    """A float32 ``BertForSequenceClassification`` holding the exact weights of a dynamically quantized
    BERT cross-encoder export (``w = (q - zero_point) * scale``), its architecture read from the graph.

    Raises ``ModelUnavailable`` when the graph is not such an export (other architecture, static
    quantization, names that do not map to BERT's parameters).
    """
    import onnx
    import torch
    from onnx import numpy_helper
    from transformers import BertConfig, BertForSequenceClassification

    model = onnx.load(str(model_file))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    constants = {
        node.name: numpy_helper.to_array(node.attribute[0].t)
        for node in model.graph.node
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR
    }

    def deq(prefix: str) -> np.ndarray:
        try:
            q = init[f"{prefix}_quantized"].astype(np.float32)
            return (q - init[f"{prefix}_zero_point"].astype(np.float32)) * init[f"{prefix}_scale"]
        except KeyError as exc:
            raise ModelUnavailable(
                f"{model_file}: no quantized tensor {prefix!r}: not a dynamic-int8 BERT export"
            ) from exc

    state: dict[str, np.ndarray] = {
        name: value
        for name, value in init.items()
        if value.dtype == np.float32 and value.ndim >= 1 and not name.endswith("_scale")
    }
    for table in ("word", "token_type", "position"):
        name = f"bert.embeddings.{table}_embeddings.weight"
        state[name] = init[name] if name in init else deq(name)
    # A MatMulInteger's output name says which Linear it is: /bert/encoder/layer.3/attention/self/key/MatMul...
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            continue
        prefix = node.input[1].removesuffix("_quantized")
        if prefix.endswith(".weight"):  # the pooler and classifier keep their parameter names
            name = prefix
        else:
            match = re.match(r"/(.+)/MatMul", node.output[0])
            if not match:
                raise ModelUnavailable(f"{model_file}: cannot tell which weight {node.output[0]!r} multiplies")
            name = match.group(1).replace("/", ".") + ".weight"
        state[name] = deq(prefix).T  # ONNX MatMul weights are (in, out); a torch Linear's are (out, in)

    vocab, hidden = state["bert.embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", k)))
    heads = _attention_heads(constants, hidden)
    eps = constants.get("/bert/embeddings/LayerNorm/Constant_1")
    classifier = state.get("classifier.weight")
    if classifier is None:
        raise ModelUnavailable(f"{model_file}: no classifier weights: not a sequence-classification export")
    config = BertConfig(
        vocab_size=int(vocab),
        hidden_size=int(hidden),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=int(state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(state["bert.embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(state["bert.embeddings.token_type_embeddings.weight"].shape[0]),
        num_labels=int(classifier.shape[0]),
        layer_norm_eps=float(eps) if eps is not None else 1e-12,
    )
    bert = BertForSequenceClassification(config)
    missing, unexpected = bert.load_state_dict(
        {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}, strict=False
    )
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelUnavailable(f"{model_file}: weights do not fit BERT (missing {missing}, unexpected {unexpected})")
    return bert.eval()


def _attention_heads(constants: dict[str, np.ndarray], hidden: int) -> int:
    """Heads from the reshape (batch, length, heads, head size) of the first attention layer."""
    prefix = "/bert/encoder/layer.0/attention/self/"

    def position(name: str) -> int:  # Constant, Constant_1, Constant_2, ... in graph order
        tail = name.rsplit("/", 1)[-1]
        return int(tail.split("_")[1]) if "_" in tail else 0

    names = sorted((n for n in constants if n.startswith(prefix)), key=position)
    scalars = [constants[n] for n in names if constants[n].dtype == np.int64 and constants[n].size == 1]
    values = [int(v.reshape(-1)[0]) for v in scalars]
    for heads, size in zip(values, values[1:], strict=False):
        if heads > 1 and size > 1 and heads * size == hidden:
            return heads
    raise ModelUnavailable(f"cannot read the number of attention heads from the graph (hidden size {hidden})")


def export_onnx(model, input_names: Sequence[str], cache_dir: Path, weights: str) -> Path:
    """The model as a float32 ONNX graph with dynamic batch and length, exported once per weights.

    The file is written under a temporary name and renamed, so processes that load at the same time
    never read a half-written export.
    """
    import torch
    import transformers

    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in input_names]
    key = hashlib.sha256(
        f"{weights}|{names}|{torch.__version__}|{transformers.__version__}|{ONNX_OPSET}".encode()
    ).hexdigest()[:16]
    target = cache_dir / f"nli-{key}.onnx"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    example = {n: torch.ones((2, 16), dtype=torch.long) for n in names}
    if "token_type_ids" in example:
        example["token_type_ids"].zero_()
    axes = {n: {0: "batch", 1: "length"} for n in names}
    fd, partial = tempfile.mkstemp(dir=cache_dir, suffix=".onnx.partial")
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings name sizes taken as constants (head size, scale); the agreement check
            # at load compares the export with float32 torch on pairs of other lengths.
            warnings.simplefilter("ignore")
            # The TorchScript exporter: the dynamo one needs onnxscript, which is not installed.
            torch.onnx.export(
                model,
                (),
                partial,
                kwargs=example,
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def quantize_int8(exported: Path) -> bytes:
    """The export with dynamically quantized int8 weights and activations (serialized)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(exported), str(target), weight_type=QuantType.QInt8)
        return target.read_bytes()


def onnx_cache_dir(cache_dir: Path | None) -> Path:
    """Where exports are kept between processes (a temporary directory unless given)."""
    return cache_dir or Path(tempfile.gettempdir()) / "triage-onnx"
