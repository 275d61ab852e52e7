"""What the diagnostics page asks of a loaded model: its input window, how long texts are in its own
tokens, and a float32 reference of the same weights to compare a reduced-precision path with.

Kept apart from ``encoders.py`` (the serving façade stays small, as sentence-transformers keeps its
exporters apart from ``CrossEncoder``). Only the inference layer touches tokenizers; callers get
plain integers and arrays.

>>> emb = get_embedder()                                                   # doctest: +SKIP
>>> embedder_window(emb), text_token_counts(emb, ["card declined"]).tolist()  # doctest: +SKIP
(256, [5])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .encoders import CrossEncoder, CrossEncoderDequantized, CrossEncoderONNX, Embedder


def embedder_window(embedder: Embedder) -> int:
    """Tokens the bi-encoder reads of one text (special tokens included); the rest is cut."""
    return int(embedder.model.max_seq_length)


def text_token_counts(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Each text's length in the bi-encoder's tokens, special tokens included, before any cut."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    encoded = embedder.model.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
    return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)


def cross_encoder_window(cross_encoder: CrossEncoder) -> int:
    """Tokens the cross-encoder reads of one (query, passage) pair, special tokens included."""
    return int(cross_encoder.impl.max_length)


def pair_token_counts(cross_encoder: CrossEncoder, pairs: list[tuple[str, str]]) -> np.ndarray:
    """Each pair's length in the cross-encoder's tokens (both texts and the special tokens), uncut."""
    if not pairs:
        return np.zeros(0, dtype=np.int64)
    impl = cross_encoder.impl
    if isinstance(impl, CrossEncoderONNX | CrossEncoderDequantized):
        from tokenizers import Tokenizer

        # A copy without truncation: the serving tokenizer cuts every pair to the window.
        uncut = Tokenizer.from_str(impl.tokenizer.to_str())
        uncut.no_truncation()
        return np.array([len(e.ids) for e in uncut.encode_batch(list(pairs))], dtype=np.int64)
    tokenizer = impl.model.tokenizer  # sentence-transformers CrossEncoder
    encoded = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=False, verbose=False)
    return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)


def scorer_window(scorer: Any) -> tuple[int, Any] | None:
    """``(window, count)`` for a routing scorer that reads tickets through its own tokenizer (NLI,
    SetFit, a self-trained head on its own ONNX encoder): ``count(texts)`` gives each ticket's tokens,
    ``window`` the room a ticket has. ``None`` for the scorers built on the bi-encoder and
    cross-encoder (the search checks cover those)."""
    embedder = getattr(getattr(scorer, "embedding", None), "embedder", None)  # self-trained: its own encoder
    if embedder is not None and hasattr(embedder, "tokenizer") and hasattr(embedder, "max_seq_length"):
        from tokenizers import Tokenizer

        uncut = Tokenizer.from_str(embedder.tokenizer.to_str())  # the serving one cuts at the window
        uncut.no_truncation()

        def count(texts: list[str]) -> np.ndarray:
            return np.array([len(e.ids) for e in uncut.encode_batch(list(texts))], dtype=np.int64)

        return int(embedder.max_seq_length), count
    body = getattr(scorer, "body", None)  # SetFit: its sentence encoder reads the ticket alone
    if body is not None and hasattr(body, "max_seq_length"):
        return int(body.max_seq_length), lambda texts: _counts(body.tokenizer, texts, special=True)
    tokenizer = getattr(scorer, "tokenizer", None)
    if tokenizer is not None and hasattr(scorer, "max_length") and hasattr(scorer, "template"):
        # NLI: the premise shares the window with a hypothesis; the room left beside the template
        # filled with a short team name, minus 4 special tokens (the NLI scorer keeps head and tail).
        hypothesis = scorer.template.format("billing")
        reserved = len(tokenizer(hypothesis, add_special_tokens=False)["input_ids"]) + 4
        return int(scorer.max_length) - reserved, lambda texts: _counts(tokenizer, texts, special=False)
    return None


def _counts(tokenizer: Any, texts: list[str], *, special: bool) -> np.ndarray:
    if not texts:
        return np.zeros(0, dtype=np.int64)
    encoded = tokenizer(list(texts), add_special_tokens=special, truncation=False, verbose=False)
    return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)


def float_reference(cross_encoder: CrossEncoder) -> tuple[Any, str] | None:
    """A float32 torch model of the serving cross-encoder's weights, and its name; ``None`` when the
    serving path is that reference already (nothing to compare).

    The packaged reranker is a dynamic-int8 export: its weights dequantized exactly into torch float32
    are the model the ONNX float32 graph, the bfloat16 path and the int8 graph all approximate.
    """
    impl = cross_encoder.impl
    model_file = Path(cross_encoder.info.path) / "model.onnx"
    if model_file.exists():
        from .onnx_graphs import is_dynamic_int8

        if not is_dynamic_int8(model_file):
            return None  # a float export run as it is: its own reference
        if isinstance(impl, CrossEncoderDequantized) and impl.dtype == "float32":
            return None
        reference = CrossEncoderDequantized(
            cross_encoder.info.path, device="cpu", dtype="float32", max_length=impl.max_length
        )
        return reference, "torch-float32 (the export's weights dequantized)"
    if getattr(impl, "dtype", "float32") == "float32" and getattr(impl, "device", "cpu") == "cpu":
        return None
    from .encoders import CrossEncoderTorch

    return CrossEncoderTorch(cross_encoder.info.path, device="cpu", dtype="float32"), "torch-float32"
