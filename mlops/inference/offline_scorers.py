"""The offline zero-shot scorers: embedding, cross-encoder and their ensemble (see ``scorers``).

They need only the packaged bi-encoder and cross-encoder, so they route when the NLI model cannot load.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from .scorers import DEFAULT_TEMPLATE, HEAD_FRACTION, BaseScorer, ClassSpec, InvalidInput, TextFitter, hypotheses_for


class _ClassVectorCache:
    """Embeddings of class texts, so that routing one ticket does not re-embed every team."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: tuple, value: np.ndarray) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class EmbeddingScorer(BaseScorer):
    """Cosine similarity of the ticket with each class, with the sentence-transformers bi-encoder.

    A class is the weighted mean of the (unit) embeddings of its name, its description and its own
    hypothesis when it has one; example tickets, when given, pull the class towards their centroid.
    Logits are ``scale × cosine``; 20 is the scale all-MiniLM-L6-v2 was trained with (its
    contrastive loss), so the uncalibrated softmax is already in a sensible range.

    >>> EmbeddingScorer().score(["my card never arrived"], [ClassSpec.from_label("card_arrival"),
    ...                                                      ClassSpec.from_label("exchange_rate")])  # doctest: +SKIP
    array([[0.998, 0.002]])
    """

    name = "embedding"

    def __init__(
        self,
        embedder: Any | None = None,
        *,
        scale: float = 20.0,
        name_weight: float = 0.3,
        description_weight: float = 0.7,
        hypothesis_weight: float = 0.3,
        examples_weight: float = 1.0,
        batch_size: int = 64,
    ) -> None:
        if embedder is None:
            from .encoders import get_embedder

            embedder = get_embedder()
        self.embedder = embedder
        self.scale = scale
        self.weights = {"name": name_weight, "description": description_weight, "hypothesis": hypothesis_weight}
        self.examples_weight = examples_weight
        self.batch_size = batch_size
        self.model_ref = embedder.info.ref
        self.version = embedder.version
        self.fitter = TextFitter.for_model_dir(embedder.info.path)
        # sentence-transformers keeps the window on its model; the ONNX embedder on itself
        window = getattr(embedder, "max_seq_length", None) or getattr(embedder.model, "max_seq_length", None)
        self.max_tokens = int(window or 256) - 2
        self._cache = _ClassVectorCache()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "scale": self.scale,
            "weights": self.weights,
            "examples_weight": self.examples_weight,
            "truncation": f"head_tail({HEAD_FRACTION})",
        }

    def fit_texts(self, texts: list[str]) -> list[str]:
        return self.fitter.fit(texts, self.max_tokens) if self.fitter else texts

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(self.fit_texts(texts), batch_size=self.batch_size)

    def class_vectors(self, classes: list[ClassSpec]) -> np.ndarray:
        key = tuple(classes) + (json.dumps(self.weights, sort_keys=True), self.examples_weight)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        views: list[tuple[int, float, str]] = []  # (class index, weight, text)
        for i, spec in enumerate(classes):
            views.append((i, self.weights["name"], spec.name))
            if spec.description.strip():
                views.append((i, self.weights["description"], spec.description.strip()))
            if spec.hypothesis.strip():
                views.append((i, self.weights["hypothesis"], hypotheses_for([spec], DEFAULT_TEMPLATE)[0]))
        vectors = self.embed_texts([text for _, _, text in views])
        out = np.zeros((len(classes), vectors.shape[1]), dtype=np.float64)
        for (i, weight, _), vec in zip(views, vectors, strict=True):
            out[i] += weight * vec
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        with_examples = [i for i, spec in enumerate(classes) if spec.examples]
        if with_examples and self.examples_weight > 0:
            for i in with_examples:
                centroid = self.embed_texts(self.read(list(classes[i].examples))).astype(np.float64).mean(axis=0)
                centroid /= np.linalg.norm(centroid)
                # More examples, more trust in them: n / (n + 2) of the weight goes to the centroid.
                n = len(classes[i].examples)
                share = self.examples_weight * n / (n + 2)
                out[i] = (1 - share) * out[i] + share * centroid
                out[i] /= np.linalg.norm(out[i])
        self._cache.put(key, out)
        return out

    def cosine(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        return self.embed_texts(texts).astype(np.float64) @ self.class_vectors(classes).T

    def _logits(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        return self.scale * self.cosine(texts, classes)


def class_passage(spec: ClassSpec) -> str:
    """What the cross-encoder reads for a class: its name and what it is about."""
    description = spec.description.strip()
    return f"{spec.name}: {description}" if description else spec.name


class CrossEncoderScorer(BaseScorer):
    """Relevance of (ticket, "name: description") pairs with the cross-encoder; logits are its raw scores.

    Every pair of the batch goes through the model once, in length-sorted padded batches
    (``encoders.CrossEncoderONNX``). Tickets longer than the window keep their head and tail.
    """

    name = "cross-encoder"

    def __init__(self, cross_encoder: Any | None = None, *, batch_size: int = 64) -> None:
        if cross_encoder is None:
            from .encoders import get_cross_encoder

            cross_encoder = get_cross_encoder()
        self.cross_encoder = cross_encoder
        self.batch_size = batch_size
        self.model_ref = cross_encoder.info.ref
        self.version = cross_encoder.version
        self.fitter = TextFitter.for_model_dir(cross_encoder.info.path)
        self.max_length = int(getattr(cross_encoder.impl, "max_length", 512) or 512)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "passage": "name: description", "truncation": f"head_tail({HEAD_FRACTION})"}

    def fit_texts(self, texts: list[str], passages: list[str]) -> list[str]:
        if not self.fitter:
            return texts
        longest_passage = max(self.fitter.count(passages), default=0)
        budget = self.max_length - 3 - longest_passage  # [CLS] ticket [SEP] passage [SEP]
        if budget < 16:
            raise InvalidInput(f"class descriptions are {longest_passage} tokens; they leave no room for the ticket")
        return self.fitter.fit(texts, budget)

    def pair_logits(self, texts: list[str], classes: list[ClassSpec], columns: np.ndarray | None = None) -> np.ndarray:
        """Cross-encoder logits for every (text, class) pair, or only for ``columns[i]`` of text ``i``."""
        passages = [class_passage(spec) for spec in classes]
        texts = self.fit_texts(texts, passages)
        if columns is None:
            columns = np.tile(np.arange(len(classes)), (len(texts), 1))
        pairs = [(texts[i], passages[j]) for i in range(len(texts)) for j in columns[i]]
        scores = self.cross_encoder.predict(pairs, batch_size=self.batch_size)
        return np.asarray(scores, dtype=np.float64).reshape(columns.shape)

    def _logits(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        return self.pair_logits(texts, classes)


class EnsembleScorer(BaseScorer):
    """Embedding scores for every class, plus cross-encoder scores for each ticket's shortlist.

    The bi-encoder ranks all classes; the cross-encoder reads the ticket with each of its
    ``shortlist`` best classes, and ``ce_weight ×`` its logit is added to theirs. Classes off the
    shortlist get the lowest cross-encoder logit of the shortlist, so a class the bi-encoder ranked
    low cannot overtake one the cross-encoder read.

    Chosen on Banking77 dev and a 1,000-ticket train sample, never on test: ``ce_weight`` 0.3 was best
    on both (+2.5 points over the embedding alone); shortlists of 5 to 20 scored the same, 10 keeps
    the right class in the shortlist for 97 % of tickets.
    """

    name = "ensemble"

    def __init__(
        self,
        embedding: EmbeddingScorer | None = None,
        cross_encoder: CrossEncoderScorer | None = None,
        *,
        shortlist: int = 10,
        ce_weight: float = 0.3,
    ) -> None:
        self.embedding = embedding or EmbeddingScorer()
        self.cross_encoder = cross_encoder or CrossEncoderScorer()
        self.shortlist = shortlist
        self.ce_weight = ce_weight
        self.model_ref = f"{self.embedding.model_ref} + {self.cross_encoder.model_ref}"
        self.version = f"{self.embedding.version} + {self.cross_encoder.version}"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "shortlist": self.shortlist,
            "ce_weight": self.ce_weight,
            "embedding": self.embedding.describe(),
            "cross_encoder": self.cross_encoder.describe(),
        }

    def _logits(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        base = self.embedding._logits(texts, classes)
        k = min(self.shortlist, len(classes))
        top = np.argsort(-base, axis=1, kind="stable")[:, :k]
        ce = self.cross_encoder.pair_logits(texts, classes, columns=top)
        rows = np.arange(len(texts))[:, None]
        bonus = np.repeat(ce.min(axis=1, keepdims=True), len(classes), axis=1)
        bonus[rows, top] = ce
        return base + self.ce_weight * bonus
