"""SetFit heads for tag sets: trained on agents' tag labels, one model per tag set.

A single-label set (urgency: low / normal / high) gets SetFit's normal head, a logistic regression
over the set's tags; a multi-label set (security, outage ...) gets a one-vs-rest head
(``multi_target_strategy="one-vs-rest"``): one logistic regression per tag, class-balanced, each tag's
probability on its own. Both are fitted on the packaged embedder's embeddings; the tag slugs, in column
order, are saved beside the weights (``TAG_META_FILE``).

Two kinds of model, by ``steps``:

* ``steps=0`` (the default, ``TRIAGE_TAG_SETFIT_STEPS``): **the head alone**, fitted on the embeddings of the
  packaged embedder the worker already holds (``encoders.get_embedder``: frozen, not fine-tuned). Saved
  without a body; loaded, it scores with that same embedder, so each tag set's champion adds a head of a
  few KB to a worker instead of a second copy of the MiniLM body (~90 MB each, measured by
  ``bench/bench_worker_memory.py``). On the tags dev split it scores above the 40-step fine-tuned body
  for sentiment and urgency and 0.055 macro-F1 below it for topics (``eval_data/tags/README.md``). A head
  records the embedder version it was fitted on and refuses to load beside another (its weights mean
  nothing on other embeddings).
* ``steps > 0``: setfit's ``Trainer`` fine-tunes its own copy of the body contrastively for ``steps``
  steps, then fits the head; saved and loaded whole (a body per model).

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
HEAD_FILE = "model_head.pkl"  # setfit's name for its head: the file ``ModelVersion.files_present`` looks for
# ``meta["body"]`` of a head fitted on the worker's embedder: no body saved, the embedder's used.
SHARED_BODY = "embedder"
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
    steps: int = 0,
    batch_size: int = 16,
    seed: int = 0,
    device: str | None = None,
    progress: ProgressFn | None = None,
) -> Any:
    """A model trained on ``texts`` with 0/1 ``targets`` per text over ``labels``: with ``steps=0`` a
    ``SharedBodyHead`` (the head alone, on the worker's embedder, ``base_model`` unused), else a
    ``setfit.SetFitModel`` whose body was fine-tuned for ``steps`` contrastive steps (pairs of tickets),
    bounded so that a run stays within a minute or two on a CPU. The head is fitted on all texts.
    ``progress`` receives each body step and the head's start and end as routing's ``train_setfit``
    sends them (``report_step``).
    """
    y = np.asarray(targets, dtype=np.int64)
    if y.shape != (len(texts), len(labels)):
        raise ValueError(f"targets are {y.shape}; expected ({len(texts)}, {len(labels)})")
    if not multi_label and (y.sum(axis=1) != 1).any():
        raise ValueError("a single-label tag set needs exactly one tag per text")
    if steps == 0:
        started = time.monotonic()
        report_step(progress, "head", 0, 1, started=started, epoch=0.0)
        model = train_shared_body_head(texts, y, multi_label=multi_label, seed=seed)
        report_step(progress, "head", 1, 1, started=started, epoch=1.0)
        return model
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

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


def head_estimator(y: np.ndarray, multi_label: bool, seed: int = 0) -> Any:
    """The head fitted on the embedder's frozen embeddings of tickets with 0/1 targets ``y``: a logistic
    regression over the set's tags, or one per tag, class-balanced, for a multi-label set (as setfit builds
    them in ``train_tag_setfit``), each with its regularisation chosen by cross-validation on the training
    tickets alone (log loss: the probabilities are served as such).

    Why not setfit's fixed ``C=1``: on the embedder's unit-length vectors it barely separates the tags; on the
    tags dev split (``eval_data/tags/shared_body_dev.py``, 3 folds by scenario) the frozen head with ``C=1``
    scored sentiment 0.388 / urgency 0.439 macro-F1, with ``C`` chosen inside each training fold 0.587 / 0.489,
    the 40-step fine-tuned body 0.409 / 0.474 (topics, one-vs-rest: 0.231, fine-tuned 0.286).
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.multiclass import OneVsRestClassifier

    columns = y if multi_label else np.eye(y.shape[1], dtype=np.int64)[y.argmax(axis=1)]
    smallest = int(min(columns.sum(axis=0).min(), (1 - columns).sum(axis=0).min()))
    cv = max(2, min(5, smallest))  # stratified folds: each needs a ticket of every class
    # l2 only (``l1_ratios=(0.0,)``) and the simplified fitted attributes: what scikit-learn 1.10 makes the
    # default, said explicitly so that every training run does not log two FutureWarnings per head.
    kwargs = {
        "cv": cv,
        "scoring": "neg_log_loss",
        "max_iter": 1000,
        "random_state": seed,
        "l1_ratios": (0.0,),
        "use_legacy_attributes": False,
    }
    if multi_label:  # balanced for the reason given in train_tag_setfit
        return OneVsRestClassifier(LogisticRegressionCV(class_weight="balanced", **kwargs))
    return LogisticRegressionCV(**kwargs)


class SharedBodyHead:
    """A tag set's head fitted on the worker's embedder (``encoders.get_embedder``), which it scores with."""

    def __init__(self, head: Any, embedder: Any) -> None:
        self.head, self.embedder = head, embedder

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        # Already read (``read``) by the caller, as setfit's ``predict_proba`` receives them.
        return np.asarray(self.head.predict_proba(self.embedder.encode(list(texts))), dtype=np.float64)

    def save_pretrained(self, path: str) -> None:
        import joblib

        Path(path).mkdir(parents=True, exist_ok=True)
        joblib.dump(self.head, Path(path) / HEAD_FILE)

    def meta(self) -> dict[str, str]:
        return {"body": SHARED_BODY, "embedder_version": self.embedder.version}


def train_shared_body_head(texts: Sequence[str], y: np.ndarray, *, multi_label: bool, seed: int = 0) -> SharedBodyHead:
    """The head of ``train_tag_setfit(steps=0)``: fitted on the worker embedder's embeddings of ``texts``."""
    from .encoders import get_embedder

    embedder = get_embedder()
    head = head_estimator(y, multi_label, seed)
    x = embedder.encode(read(texts))
    head.fit(x, y if multi_label else y.argmax(axis=1))
    return SharedBodyHead(head, embedder)


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
    body = model.meta() if isinstance(model, SharedBodyHead) else {}
    content = {**meta, **body, "labels": list(labels), "multi_label": multi_label}
    (staging / TAG_META_FILE).write_text(json.dumps(content, indent=2), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


class TagSetFitModel:
    """A saved tag-set model: ``labels`` (tag slugs, column order), ``head`` and ``probabilities(texts)``.

    A head fitted on the worker's embedder (``shares_embedder``) scores with that embedder, the process's
    one copy; ``ModelUnavailable`` when this process's embedder is not the one it was fitted on.
    """

    def __init__(self, path: str | Path, *, version: str = "", device: str | None = None) -> None:
        from .encoders import get_embedder, resolve_device

        path = Path(path)
        try:
            meta = json.loads((path / TAG_META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"{path} holds no tag SetFit model ({exc})") from None
        self.path, self.version = path, version
        self.labels: list[str] = list(meta["labels"])
        self.multi_label = bool(meta["multi_label"])
        self.meta = meta
        self.shares_embedder = meta.get("body") == SHARED_BODY
        if self.shares_embedder:
            import joblib

            embedder = get_embedder()
            if meta.get("embedder_version") != embedder.version:
                raise ModelUnavailable(
                    f"{path} was fitted on the embeddings of {meta.get('embedder_version')}; "
                    f"this process's embedder is {embedder.version}"
                )
            try:
                head = joblib.load(path / HEAD_FILE)
            except (OSError, ValueError, EOFError) as exc:
                raise ModelUnavailable(f"{path}: cannot load its head ({exc})") from None
            self.model: Any = SharedBodyHead(head, embedder)
            self.head = head
        else:
            from setfit import SetFitModel

            self.model = SetFitModel.from_pretrained(str(path), device=resolve_device(device or "auto"))
            self.head = self.model.model_head

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)))
        if self.shares_embedder:
            probs = self.model.predict_proba(read(texts))
        else:
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
