"""Few-shot SetFit recipe for ticket routing (issue 7).

SetFit = (1) contrastively fine-tune a sentence-transformers body so that tickets of
the same queue embed close together, then (2) fit a light classification head on the
fine-tuned embeddings.  SetFit's stock ``Trainer`` builds O(n^2) sentence *pairs* and
trains with ``CosineSimilarityLoss``; on a 2-core CPU that is slow (14 min for
8 shots x 77 classes) and, with one positive per pair, a weak training signal.

This recipe keeps the SetFit structure and product (a ``setfit.SetFitModel``) but
trains the body with a supervised-contrastive loss over *class-balanced batches*:
each step draws ``classes_per_batch`` distinct classes x ``samples_per_class``
examples, and every other example in the batch is a negative (in-batch negatives).
One forward pass therefore scores ~N^2 pairs instead of N/2.  Two CPU tricks keep
steps cheap: short ``max_length`` (tickets are ~16 word-pieces) and length-sorted
micro-batches, so a batch is not padded to its single longest ticket.

Example::

    from mlops.inference.setfit_recipe import SetFitRecipe, train_setfit

    model = train_setfit(
        ["my card hasn't arrived", "where is my new card", "top-up failed", ...],
        ["card_arrival", "card_arrival", "top_up_failed", ...],
        base_model="/path/to/all-MiniLM-L6-v2",
        progress=lambda p: print(p["phase"], p["step"], p["total_steps"]),
    )
    model.predict(["card still not here"])          # -> ["card_arrival"]
    model.predict_proba(["card still not here"])     # columns follow model.labels
    model.save_pretrained("/tmp/router")             # SetFitModel.from_pretrained(...) loads it
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must be cheap
    import setfit

ProgressFn = Callable[[dict], None]


def report_step(
    progress: ProgressFn | None,
    phase: str,
    step: int,
    total_steps: int,
    *,
    started: float,
    epoch: float,
    loss: float | None = None,
) -> None:
    """Send one training step to ``progress`` in the form the run's recorder and page read
    (``{"phase", "step", "total_steps", "epoch", "eta_seconds"[, "loss"]}``); shared by every trainer
    of the project, so routing and tag runs report alike. The ETA extrapolates the steps done so far."""
    if progress is None:
        return
    update = {
        "phase": phase,
        "step": step,
        "total_steps": total_steps,
        "epoch": epoch,
        "eta_seconds": (time.monotonic() - started) / step * (total_steps - step) if step else None,
    }
    if loss is not None:
        update["loss"] = loss
    progress(update)


@dataclass(frozen=True)
class SetFitRecipe:
    """Hyper-parameters of :func:`train_setfit`; defaults are the values chosen on
    Banking77 *dev* (see ``bench/setfit_sweep.py``)."""

    # --- body (contrastive fine-tuning) ---
    max_length: int = 64  # tickets are short; 256/512 padding wastes most of the compute
    classes_per_batch: int = 32  # distinct classes per step; the rest of the batch are negatives
    samples_per_class: int = 2  # positives per class per step (2 == symmetric in-batch-negatives/MNRL)
    body_epochs: float = 4.0  # passes over the training examples ...
    min_body_steps: int = 60  # ... but at least this many steps (tiny few-shot sets) ...
    max_body_steps: int = 200  # ... and at most this many (keeps large sets within minutes on CPU)
    body_learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    temperature: float = 0.05  # SupCon / InfoNCE temperature (scale 20, as in MNRL)
    freeze_embeddings: bool = True  # word-piece table is 50% of the params; few-shot data can't move it usefully
    micro_batch_size: int = 16  # forward in length-sorted chunks so padding stays small
    # --- data ---
    use_label_names: bool = True  # "card_arrival" -> "card arrival" as one extra example of its class
    # --- head (sklearn logistic regression on normalised embeddings) ---
    head_c: float = 20.0  # unit-norm features need weak regularisation; C=1 under-fits badly
    head_class_weight: str | None = None
    head_max_iter: int = 2000
    encode_batch_size: int = 64


def _humanize(label: str) -> str:
    return label.replace("_", " ").replace("-", " ").strip()


def _class_balanced_batches(
    class_ids: list[int], n_steps: int, classes_per_batch: int, samples_per_class: int, rng: random.Random
) -> list[list[int]]:
    """Index batches of ``classes_per_batch`` distinct classes x ``samples_per_class`` examples.

    Classes are visited in reshuffled rounds (each class equally often) and each class's
    examples are consumed from a reshuffled pool, so every example is seen before any
    repeats.  Distinct classes per batch means in-batch negatives are true negatives.
    """
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(class_ids):
        by_class.setdefault(c, []).append(i)
    # a class needs >= 2 examples to form a positive pair
    usable = [c for c, idx in by_class.items() if len(idx) >= 2]
    if not usable:
        raise ValueError("SetFit needs at least one class with two or more examples")
    k = samples_per_class
    pools: dict[int, list[int]] = {c: [] for c in usable}

    def take(c: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if not pools[c]:
                pools[c] = rng.sample(by_class[c], len(by_class[c]))
            nxt = pools[c].pop()
            if nxt not in out:  # avoid pairing an example with itself
                out.append(nxt)
            elif len(by_class[c]) < k and len(out) >= 2:
                break  # tiny class: fewer than k distinct examples, accept what we have
        return out

    per_batch = min(classes_per_batch, len(usable))
    order: list[int] = []
    batches = []
    for _ in range(n_steps):
        chosen: list[int] = []
        while len(chosen) < per_batch:
            if not order:
                order = rng.sample(usable, len(usable))
            c = order.pop()
            if c not in chosen:
                chosen.append(c)
        batches.append([i for c in chosen for i in take(c)])
    return batches


def _supcon_loss(emb, class_ids, temperature: float):
    """Supervised contrastive loss (Khosla et al. 2020) on L2-normalised embeddings.

    With two samples per class this equals symmetric MultipleNegativesRankingLoss.
    """
    import torch

    n = emb.shape[0]
    logits = emb @ emb.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=emb.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    pos = (class_ids[:, None] == class_ids[None, :]) & ~self_mask
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    log_prob = log_prob.masked_fill(~pos, 0.0)
    n_pos = pos.sum(1).clamp(min=1)
    return -(log_prob.sum(1) / n_pos).mean()


def train_setfit(
    texts: list[str],
    labels: list[str],
    *,
    base_model: str,
    recipe: SetFitRecipe | None = None,
    label_descriptions: dict[str, str] | None = None,
    progress: ProgressFn | None = None,
    device: str | None = None,
    seed: int = 0,
) -> setfit.SetFitModel:
    """Fine-tune ``base_model`` on labelled ``texts`` and return a ``setfit.SetFitModel``.

    ``model.labels`` holds the class names (sorted); ``predict`` returns those names and
    ``predict_proba`` columns follow the same order.  ``label_descriptions`` (label ->
    short text) are added as one extra example per class; without them and with
    ``recipe.use_label_names`` the humanised label name is used instead.
    ``progress`` receives ``{"phase", "step", "total_steps", "epoch", "eta_seconds"}``.
    """
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel
    from sklearn.linear_model import LogisticRegression

    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    recipe = recipe or SetFitRecipe()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)

    label_names = sorted(set(labels))
    label2id = {name: i for i, name in enumerate(label_names)}
    train_texts = list(texts)
    train_ids = [label2id[y] for y in labels]
    if label_descriptions or recipe.use_label_names:
        for name in label_names:
            extra = (label_descriptions or {}).get(name) or (_humanize(name) if recipe.use_label_names else None)
            if extra:
                train_texts.append(extra)
                train_ids.append(label2id[name])

    body = SentenceTransformer(str(base_model), device=device)
    body.max_seq_length = recipe.max_length
    preprocess = getattr(body, "preprocess", None) or body.tokenize

    # ---------------- phase 1: contrastive body fine-tuning ----------------
    batch_examples = recipe.classes_per_batch * recipe.samples_per_class
    n_steps = math.ceil(recipe.body_epochs * len(train_texts) / batch_examples)
    n_steps = max(recipe.min_body_steps, min(recipe.max_body_steps, n_steps))
    n_classes_usable = sum(1 for c in set(train_ids) if train_ids.count(c) >= 2)
    if n_classes_usable < 2:
        n_steps = 0  # nothing to contrast: keep the pretrained body, train the head only
    batches = (
        _class_balanced_batches(train_ids, n_steps, recipe.classes_per_batch, recipe.samples_per_class, rng)
        if n_steps
        else []
    )

    if recipe.freeze_embeddings:
        for name, p in body.named_parameters():
            if "embeddings" in name:
                p.requires_grad = False
    params = [p for p in body.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.body_learning_rate, weight_decay=recipe.weight_decay)
    warmup = int(recipe.warmup_ratio * n_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (n_steps - s) / max(1, n_steps - warmup)),
    )

    body.train()
    started = time.monotonic()
    for step, batch in enumerate(batches, start=1):
        # Length-sorted micro-batches: each chunk is padded only to its own longest
        # ticket, roughly halving the tokens processed vs. padding the whole batch.
        batch = sorted(batch, key=lambda i: len(train_texts[i]))
        chunks = [batch[i : i + recipe.micro_batch_size] for i in range(0, len(batch), recipe.micro_batch_size)]
        embs = []
        for chunk in chunks:
            feats = preprocess([train_texts[i] for i in chunk])
            feats = {k: v.to(body.device) if hasattr(v, "to") else v for k, v in feats.items()}
            embs.append(body(feats)["sentence_embedding"])
        emb = torch.nn.functional.normalize(torch.cat(embs), dim=-1)
        ids = torch.tensor([train_ids[i] for i in batch], device=emb.device)
        loss = _supcon_loss(emb, ids, recipe.temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if progress is not None:
            epoch = step * batch_examples / len(train_texts)
            report_step(progress, "body", step, n_steps, started=started, epoch=epoch, loss=float(loss.detach()))
    body.eval()
    for p in body.parameters():
        p.requires_grad = True  # leave a normal, fully trainable body behind

    # ---------------- phase 2: logistic-regression head ----------------
    head_started = time.monotonic()
    report_step(progress, "head", 0, 1, started=head_started, epoch=0.0)
    emb = body.encode(train_texts, batch_size=recipe.encode_batch_size, normalize_embeddings=True)
    head = LogisticRegression(
        C=recipe.head_c, class_weight=recipe.head_class_weight, max_iter=recipe.head_max_iter, random_state=seed
    )
    head.fit(emb, np.asarray(train_ids))
    report_step(progress, "head", 1, 1, started=head_started, epoch=1.0)

    # Integer head targets + ``labels`` => SetFit maps predictions back to label names.
    return SetFitModel(model_body=body, model_head=head, normalize_embeddings=True, labels=label_names)
