"""SetFit heads for tag sets: trained on agents' tag labels, one model per tag set.

A single-label set (urgency: low / normal / high) gets SetFit's normal head, a logistic regression
over the set's tags; a multi-label set (security, outage ...) gets a one-vs-rest head
(``multi_target_strategy="one-vs-rest"``): one logistic regression per tag, class-balanced, each tag's
probability on its own. Both train with setfit's ``Trainer`` on the packaged embedder; the tag slugs, in column
order, are saved beside the weights (``TAG_META_FILE``).

``TagSetFitModel.probabilities(texts)`` returns ``(n, k)`` probabilities, columns in ``labels`` order:
rows of a single-label model sum to 1, a multi-label model's columns are independent. Like every
scorer it reads a ticket's ask (``mlops.text.clean_ask``), for training as for scoring.

>>> model = train_tag_setfit(texts, targets, labels=["outage", "security"], multi_label=True,
...                          base_model=resolve_model_ref("packaged:all-MiniLM-L6-v2"))   # doctest: +SKIP
>>> path = save_tag_model(model, "a/t-1", labels=["outage", "security"], multi_label=True, meta={})  # doctest: +SKIP
>>> get_tag_model(path).probabilities(["the site is down"])                                   # doctest: +SKIP
array([[0.93, 0.04]])
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlops.text import clean_ask

from .encoders import ModelUnavailable
from .setfit_recipe import ProgressFn, report_step

TAG_META_FILE = "triage_tags.json"
# Loaded tag models kept per process: a few tag sets' champions.
CACHE_SIZE = 4


def read(texts: Sequence[str]) -> list[str]:
    return [clean_ask(t) for t in texts]


def train_tag_setfit(
    texts: Sequence[str],
    targets: Sequence[Sequence[int]],
    *,
    labels: Sequence[str],
    multi_label: bool,
    base_model: str,
    steps: int = 40,
    batch_size: int = 16,
    seed: int = 0,
    device: str | None = None,
    progress: ProgressFn | None = None,
) -> Any:
    """A ``setfit.SetFitModel`` trained on ``texts`` with 0/1 ``targets`` per text over ``labels``.

    ``steps`` bounds the contrastive fine-tuning of the body (pairs of tickets), so that a run stays
    within a minute or two on a CPU; the head is then fitted on all texts. ``progress`` receives each
    body step and the head's start and end as routing's ``train_setfit`` sends them (``report_step``).
    """
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    y = np.asarray(targets, dtype=np.int64)
    if y.shape != (len(texts), len(labels)):
        raise ValueError(f"targets are {y.shape}; expected ({len(texts)}, {len(labels)})")
    if multi_label:
        # Balanced per-tag weights: a rare tag (5-14 positives in 139) under plain weights never reaches 0.5.
        # Chosen on eval_data/tags dev (2-fold cross-fit, topics): macro-F1 0.311 balanced, 0.000 plain.
        model = SetFitModel.from_pretrained(
            str(base_model),
            multi_target_strategy="one-vs-rest",
            head_params={"class_weight": "balanced"},
            device=device,
        )
        column = [list(map(int, row)) for row in y]
    else:
        if (y.sum(axis=1) != 1).any():
            raise ValueError("a single-label tag set needs exactly one tag per text")
        model = SetFitModel.from_pretrained(str(base_model), labels=list(labels), device=device)
        column = [int(i) for i in y.argmax(axis=1)]
    with tempfile.TemporaryDirectory(prefix="setfit-tags-") as scratch:
        # No checkpoints: the model is saved once, whole, by save_tag_model; the Trainer's files stay in scratch.
        args = TrainingArguments(
            output_dir=scratch,
            save_strategy="no",
            batch_size=batch_size,
            num_epochs=1,
            max_steps=steps,
            seed=seed,
            report_to="none",
            show_progress_bar=False,
        )
        data = Dataset.from_dict({"text": read(texts), "label": column})
        callbacks = [_progress_callback(progress)] if progress is not None else None
        Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks).train()
    report_step(progress, "head", 1, 1, started=time.monotonic(), epoch=1.0)
    return model


def _progress_callback(progress: ProgressFn) -> Any:
    """A ``transformers.TrainerCallback`` that reports setfit's body steps through ``report_step``; when the
    body's training ends, setfit fits the head (reported as its step 0 of 1)."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs) -> None:
            self.started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs) -> None:
            # setfit logs the body's loss as "embedding_loss" every ``logging_steps``; none before the first log.
            logged = [row["embedding_loss"] for row in state.log_history if "embedding_loss" in row]
            report_step(
                progress,
                "body",
                state.global_step,
                state.max_steps,
                started=self.started,
                epoch=float(state.epoch or 0.0),
                loss=float(logged[-1]) if logged else None,
            )

        def on_train_end(self, args, state, control, **kwargs) -> None:
            report_step(progress, "head", 0, 1, started=time.monotonic(), epoch=0.0)

    return StepProgress()


def save_tag_model(model: Any, path: str | Path, *, labels: Sequence[str], multi_label: bool, meta: dict) -> Path:
    """Save where ``TagSetFitModel`` loads it, all at once (written to ``<path>.partial``, then renamed)."""
    target = Path(path)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(staging))
    content = {**meta, "labels": list(labels), "multi_label": multi_label}
    (staging / TAG_META_FILE).write_text(json.dumps(content, indent=2), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


class TagSetFitModel:
    """A saved tag-set SetFit model: ``labels`` (tag slugs, column order) and ``probabilities(texts)``."""

    def __init__(self, path: str | Path, *, version: str = "", device: str | None = None) -> None:
        from setfit import SetFitModel

        from .encoders import resolve_device

        path = Path(path)
        try:
            meta = json.loads((path / TAG_META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"{path} holds no tag SetFit model ({exc})") from None
        self.path, self.version = path, version
        self.labels: list[str] = list(meta["labels"])
        self.multi_label = bool(meta["multi_label"])
        self.meta = meta
        self.model = SetFitModel.from_pretrained(str(path), device=resolve_device(device or "auto"))

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)))
        probs = np.asarray(self.model.predict_proba(read(texts), as_numpy=True), dtype=np.float64)
        if probs.ndim == 1:  # one label only
            probs = probs[:, None]
        return probs


_CACHE: OrderedDict[tuple[str, str], TagSetFitModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def get_tag_model(path: str | Path, version: str = "") -> TagSetFitModel:
    """The tag model at ``path``, loaded once per process and cached by (path, version)."""
    key = (str(path), version)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    model = TagSetFitModel(path, version=version)
    with _CACHE_LOCK:
        _CACHE[key] = model
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
        return _CACHE[key]
