"""SetFit scorer: a classifier fine-tuned on agents' labels, behind the same ``score(texts, classes)``.

A trained version is a directory written by ``SetFitModel.save_pretrained`` (the fine-tuned
sentence-transformers body, ``model_head.pkl`` with the logistic-regression head and
``config_setfit.json`` with the class labels, i.e. team slugs). ``get_setfit_scorer`` loads it once
per process and keeps it cached by (path, version), so routing one ticket does not reload weights.

Classes and the hybrid rule
---------------------------
The model knows the teams it was trained on (``scorer.labels``). ``score(texts, classes)`` returns
probabilities over the *requested* classes, matched by slug:

* requested classes the model knows (K) get the model's probabilities, renormalised over K (mass the
  model gives to teams not requested any more, e.g. a team deactivated since training, is dropped);
* requested classes it does not know (U: a new team, or one with too few labels at training time)
  are scored by the configured zero-shot scorer ``z`` over *all* requested classes, and
  ``m = Σ_{u∈U} z_u`` is the share of probability the zero-shot scorer gives to those teams. The
  zero-shot scorer sees each class of K with up to ``EXAMPLES_PER_CLASS`` of its training tickets
  (``ClassSpec.examples``, saved beside the weights): it then weighs a ticket against what those
  teams actually receive, not only against their names, which are often opaque ("Tier 2"). Then

      p_u = z_u                       for u in U
      p_k = (1 - m) · s_k / Σ_K s     for k in K   (s = SetFit probabilities)

  i.e. zero-shot decides how much of the ticket belongs to teams the model never learnt, and SetFit
  splits the rest among the teams it did learn. Rows still sum to 1. With U empty this is exactly
  SetFit (and the zero-shot model is not run at all); with K empty it is exactly zero-shot.

``logits`` are ``log p``, so ``softmax(logits) == p`` and a temperature fitted for the version
rescales them like any other scorer's (``softmax(log p / T)``).

>>> scorer = SetFitScorer("artifacts/setfit/sf-20261125-1", version="sf-20261125-1")  # doctest: +SKIP
>>> classes = [ClassSpec("billing", "Billing"), ClassSpec("orders", "Orders")]           # doctest: +SKIP
>>> scorer.score(["I was charged twice"], classes)                                     # doctest: +SKIP
array([[0.96, 0.04]])
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .encoders import ModelUnavailable, resolve_device
from .scorers import BaseScorer, ClassSpec, Scorer, TextFitter

logger = logging.getLogger(__name__)

# Written beside the weights by learning.retraining: labels, data hash, recipe and base model of the version.
META_FILE = "triage_setfit.json"
# Probabilities are floored here before the log, so that a class the model rules out stays finite.
_FLOOR = 1e-9
# Loaded models kept per process: the champion, plus the challenger while it is being evaluated.
CACHE_SIZE = 3
# Training tickets per class kept beside the weights, shown to the zero-shot scorer as class examples.
EXAMPLES_PER_CLASS = 16

ZeroShotSource = Scorer | Callable[[], Scorer] | None


class SetFitScorer(BaseScorer):
    """Route with a SetFit model trained on labelled tickets; untrained teams fall back to zero-shot.

    ``model_path`` is a directory saved by ``SetFitModel.save_pretrained``. ``zero_shot`` is the
    scorer (or a zero-argument function returning it, called on first need) for teams the model was
    not trained on; ``None`` means the configured zero-shot scorer (``configured_zero_shot``).

    >>> scorer = SetFitScorer("/srv/artifacts/setfit/sf-7", version="sf-7")          # doctest: +SKIP
    >>> scorer.labels                                                                 # doctest: +SKIP
    ['accounts', 'billing', 'shipping']
    """

    name = "setfit"

    def __init__(
        self,
        model_path: str | Path,
        *,
        version: str = "",
        zero_shot: ZeroShotSource = None,
        device: str | None = None,
        batch_size: int = 64,
    ) -> None:
        path = Path(model_path)
        if not (path / "model_head.pkl").exists():
            raise ModelUnavailable(f"no trained SetFit model in {path} (model_head.pkl is missing)")
        self.device = resolve_device(device)
        try:
            from setfit import SetFitModel

            model = SetFitModel.from_pretrained(str(path), local_files_only=True, device=self.device)
        except Exception as exc:  # corrupt files, a head pickled by an incompatible scikit-learn, ...
            raise ModelUnavailable(f"cannot load the SetFit model in {path}: {exc}") from exc
        if not model.labels:
            raise ModelUnavailable(f"the SetFit model in {path} has no labels in config_setfit.json")
        self.model = model
        self.body = model.model_body
        self.head = model.model_head
        # The head predicts integer ids; config_setfit.json's labels name them (train_setfit's contract).
        self.labels: list[str] = [str(model.labels[int(c)]) for c in self.head.classes_]
        self.path = str(path)
        self.model_ref = self.path
        self.version = version or path.name
        self.meta = _read_meta(path)
        self.examples: dict[str, tuple[str, ...]] = {
            str(slug): tuple(t for t in texts if isinstance(t, str) and t.strip())
            for slug, texts in (self.meta.get("examples") or {}).items()
        }
        self.batch_size = batch_size
        self.fitter = TextFitter.for_model_dir(path)
        self.max_tokens = max(8, int(self.body.max_seq_length or 128) - 2)
        self._zero_shot_source = zero_shot
        self._zero_shot: Scorer | None = zero_shot if isinstance(zero_shot, Scorer) else None
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "labels": self.labels,
            "max_length": self.max_tokens + 2,
            "hybrid": "zero-shot share for untrained classes, SetFit split of the rest",
            "truncation": "head_tail",
        }

    # --- model outputs -------------------------------------------------------------------------------
    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings of ``texts`` from the fine-tuned body (head and tail of long tickets)."""
        fitted = self.fitter.fit(texts, self.max_tokens) if self.fitter else texts
        with self._lock:  # a sentence-transformers model is not safe to call from two threads at once
            vectors = self.body.encode(
                fitted,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float64)

    def label_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """``(n_texts, len(self.labels))`` probabilities over the labels the model was trained on."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        return np.asarray(self.head.predict_proba(self.embed(texts)), dtype=np.float64)

    def zero_shot(self) -> Scorer:
        if self._zero_shot is None:
            source = self._zero_shot_source
            self._zero_shot = source() if callable(source) else configured_zero_shot()
        return self._zero_shot

    def known(self, classes: Sequence[ClassSpec]) -> list[bool]:
        """For each class, whether the model was trained on it (by slug)."""
        labels = set(self.labels)
        return [spec.slug in labels for spec in classes]

    def probabilities(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        """The hybrid probabilities described in the module docstring, ``(n_texts, n_classes)``."""
        known = np.array(self.known(classes), dtype=bool)
        out = np.zeros((len(texts), len(classes)), dtype=np.float64)
        if known.any():
            column = {label: j for j, label in enumerate(self.labels)}
            columns = [column[spec.slug] for spec, is_known in zip(classes, known, strict=True) if is_known]
            picked = self.label_probabilities(texts)[:, columns]
            total = picked.sum(axis=1, keepdims=True)
            # All of the model's mass on teams not requested any more: no preference among the rest.
            share = np.divide(picked, total, out=np.full_like(picked, 1.0 / picked.shape[1]), where=total > 0)
            out[:, known] = share
        if not known.all():
            described = [
                dataclasses.replace(spec, examples=spec.examples or self.examples.get(spec.slug, ()))
                if is_known
                else spec
                for spec, is_known in zip(classes, known, strict=True)
            ]
            z = np.asarray(self.zero_shot().score(texts, described), dtype=np.float64)
            unknown_mass = z[:, ~known].sum(axis=1, keepdims=True)
            out[:, ~known] = z[:, ~known]
            out[:, known] *= 1.0 - unknown_mass
        return out

    def _logits(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        return np.log(np.clip(self.probabilities(texts, classes), _FLOOR, 1.0))


def save_model(
    model: Any,
    path: str | Path,
    *,
    texts: Sequence[str] = (),
    labels: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Save a trained ``SetFitModel`` where ``SetFitScorer`` loads it, all at once or not at all.

    Up to ``EXAMPLES_PER_CLASS`` of the training ``texts`` per label are kept in the metadata file
    as class examples for the hybrid; ``meta`` (version, data hash, recipe, ...) is stored with them.
    The files are written to ``<path>.partial`` and renamed, so a crash never leaves half a model.

    >>> save_model(model, "artifacts/setfit/setfit-3", texts=texts, labels=labels)   # doctest: +SKIP
    """
    target = Path(path)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(staging))
    by_label: dict[str, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        by_label.setdefault(str(label), []).append(text)
    rng = random.Random(seed)
    examples = {
        label: rng.sample(items, min(EXAMPLES_PER_CLASS, len(items))) for label, items in sorted(by_label.items())
    }
    content = {**(meta or {}), "labels": [str(label) for label in model.labels], "examples": examples}
    (staging / META_FILE).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def configured_zero_shot() -> Scorer:
    """The zero-shot scorer routing uses without a trained model (``TRIAGE_ROUTING_SCORER``, with fallbacks)."""
    from .registry import get_zero_shot_scorer

    return get_zero_shot_scorer()


_CACHE: OrderedDict[tuple[str, str], SetFitScorer] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def get_setfit_scorer(model_path: str | Path, version: str = "", **kwargs: Any) -> SetFitScorer:
    """The SetFit scorer of one version, loaded once per process and cached by (path, version).

    >>> get_setfit_scorer(version.artifact_path, version.version)    # doctest: +SKIP
    """
    key = (str(model_path), version)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    # Loading takes seconds: do it outside the lock; two threads racing here load it twice, harmlessly.
    scorer = SetFitScorer(model_path, version=version, **kwargs)
    with _CACHE_LOCK:
        _CACHE[key] = scorer
        _CACHE.move_to_end(key)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
        return _CACHE[key]


def scorer_for_version(model_version: Any) -> SetFitScorer:
    """The scorer of a ``mlops.models.ModelVersion`` row whose ``scorer`` is ``"setfit"``."""
    if not model_version.artifact_path:
        raise ModelUnavailable(f"model version {model_version} has no artifact_path")
    return get_setfit_scorer(model_version.artifact_path, model_version.version)


def clear_cache() -> None:
    """Forget every loaded SetFit model (tests, and a worker told that files moved)."""
    with _CACHE_LOCK:
        _CACHE.clear()


__all__ = [
    "EXAMPLES_PER_CLASS",
    "META_FILE",
    "SetFitScorer",
    "clear_cache",
    "configured_zero_shot",
    "get_setfit_scorer",
    "save_model",
    "scorer_for_version",
]
