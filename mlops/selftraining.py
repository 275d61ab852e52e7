"""Self-training a zero-shot router on the unlabeled ticket stream (no labels read, none needed).

Every ticket that arrives is evidence about what each team receives. The zero-shot teacher (ticket
embedding against each team's name and description) pseudo-labels the stream; the most confident
tickets of each team are kept and a logistic head is fitted on their embeddings, with each team's own
name/description vector as one more example of it. The head then routes new tickets from the same
embedding: it has learnt what the stream's tickets for a team look like, not only what the admin
wrote about the team.

Chosen on Banking77 dev with 3,000 train texts as the unlabeled pool (their labels never read), never
on test (``bench/selftrain_sweep.py``):

* ``keep_fractions`` (0.5, 1.0), two rounds. Round 1 keeps the confident half of each team's
  predicted tickets, ranked by the teacher's margin (best minus second-best logit; the ranking does
  not depend on the logit scale); 0.3 kept too few, 0.7 and 1.0 scored the same or worse. Round 2
  relabels the whole pool with the round-1 head (more accurate than the teacher, so its labels can be
  trusted more widely) and fits the final head on all of it: +1.8 points with descriptions, +2.8
  names only (dev 80.9 → 82.7 and 73.7 → 76.5). More rounds moved dev by ±1, within its noise;
* ``regularization`` (C of the logistic regression, on unit vectors) 1.0; classes weighted
  ``balanced`` so that a team that receives many confident tickets does not drown the others.
* ``prior_weight`` 0.25: the teacher's zero-shot log-probabilities (what the team descriptions say),
  times 0.25, are added to the head's in each round's relabelling and when routing. Why: on a
  realistic stream the head alone forgets the descriptions. On Parcelwise (480-ticket stream, dev
  120) its pseudo-labels flooded some teams and starved their close neighbours (19 to 65 per team
  where each team sent 40) and on the demo help desk (a ~200-ticket stream) the head alone routed
  no better than its teacher (61.7 %); the lead's test figures had the self-trained version below
  the zero-shot one on Parcelwise (75.8 vs 76.3 %). Dev, weights 0 / 0.25 / 0.5, tickets read as
  asks (``bench/routing_text_sweep.py``): Parcelwise 80.0 / 82.5 / 80.8, demo 61.7 / 63.3 / 66.7,
  Banking77 with descriptions 82.7 / 82.5 / 81.7 (0.5 and more cost Banking77 a point, hence 0.25).
  Names only, the prior cost Banking77 1.7 points (76.5 / 74.8 / 73.8): a team's name alone is a weak
  teacher, so the weight is scaled by the share of teams with a description
  (``SelfTrainingConfig.with_descriptions``; none described: the head alone).

Read once on Banking77 test (``evaluate_routing --unlabeled train.tsv --unlabeled-limit 3000``): with
descriptions 82.3 % (zero-shot MiniLM embedding 72.8 %), names only 77.2 % (62.4 %); 57–59 s of CPU
to self-train on 3,000 tickets (embedding them is most of it).

What the stream must offer, checked before any model runs (``SelfTrainingError`` otherwise, and
the caller keeps the zero-shot version serving): at least ``min_tickets_per_class`` distinct tickets
per team after duplicates are dropped (a bot sending the same ticket 500 times is one ticket), and a
stream mostly in the language the embedder reads. Teams with fewer than ``min_pseudo_labels``
confident tickets are *starved*: they are reported, the head still knows them from their
description, and a promotion guard can refuse on them.

>>> stream = prepare_stream(["Card declined", "card  declined", "Where is my parcel?"], n_classes=1,
...                         config=SelfTrainingConfig(min_tickets_per_class=2, language=""))
>>> stream.texts, stream.duplicates_removed
(['Card declined', 'Where is my parcel?'], 1)
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mlops.inference.language import language_share
from mlops.text import clean_ask


class SelfTrainingError(ValueError):
    """The stream cannot train a self-trained version; the message says why, in words for an admin."""


class NotEnoughTickets(SelfTrainingError):
    """Fewer distinct tickets than the minimum per team."""


class WrongLanguage(SelfTrainingError):
    """The stream is mostly in a language the embedder does not read."""


@dataclass(frozen=True)
class SelfTrainingConfig:
    """The few choices of self-training; the defaults are the ones measured (module docstring)."""

    # Share of each class's predicted tickets kept, per round: round 1 ranks by the teacher's margin,
    # each later round relabels the pool with the previous head.
    keep_fractions: tuple[float, ...] = (0.5, 1.0)
    regularization: float = 1.0
    # Weight of the teacher's zero-shot log-probabilities added to the head's (``SelfTrainedHead``),
    # in every round's relabelling and in routing; 0 routes with the head alone (module docstring).
    prior_weight: float = 0.25
    # The teacher's logit scale (``EmbeddingScorer.scale``): the prior is softmax(scale × cosine).
    teacher_scale: float = 20.0
    # Self-training reads each ticket's ask (``mlops.text.clean_ask``), as the scorers do.
    read_asks: bool = True
    min_tickets_per_class: int = 20
    min_pseudo_labels: int = 3
    # A team keeps at most this many times its fair share (kept tickets / teams) of pseudo-labels.
    max_share: float = 3.0
    # ISO 639-1 code of the language the embedder reads; "" skips the check.
    language: str = "en"
    # What else a stream's tickets may be read as (the language detector compares these only; a text
    # in another script, e.g. Cyrillic, reads as none of them and counts as not in ``language``).
    other_languages: tuple[str, ...] = ("de", "es", "fr", "it", "nl", "pl", "pt")
    min_language_share: float = 0.5
    language_sample: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.keep_fractions or not all(0 < q <= 1 for q in self.keep_fractions):
            raise ValueError(f"keep_fractions must be one or more shares in (0, 1], got {self.keep_fractions}")
        if self.prior_weight < 0 or self.teacher_scale <= 0:
            raise ValueError(
                f"prior_weight must be >= 0 and teacher_scale > 0, got {self.prior_weight}, {self.teacher_scale}"
            )
        if self.regularization <= 0:
            raise ValueError(f"regularization must be > 0, got {self.regularization}")
        if self.min_tickets_per_class < 1 or self.min_pseudo_labels < 1:
            raise ValueError("min_tickets_per_class and min_pseudo_labels must be >= 1")
        if self.max_share < 1:
            raise ValueError(f"max_share must be >= 1, got {self.max_share}")
        if not 0 <= self.min_language_share <= 1:
            raise ValueError(f"min_language_share must be in [0, 1], got {self.min_language_share}")

    def with_descriptions(self, described: Sequence[bool]) -> SelfTrainingConfig:
        """This config for teams of which ``described`` say which an admin described: the prior
        weighs ``prior_weight`` × the share described (a bare team name is a weak teacher: with
        names only, Banking77 dev lost 1.7 points at 0.25, with descriptions 0.2)."""
        share = sum(map(bool, described)) / len(described) if len(described) else 0.0
        return replace(self, prior_weight=self.prior_weight * share)


# --- the stream -------------------------------------------------------------------------------


_DIGITS = re.compile(r"\d+")


def duplicate_key(text: str) -> str:
    """What makes two tickets the same ticket: case, spacing and numbers (order ids, dates) aside.

    >>> duplicate_key("Order  #1234 LATE") == duplicate_key("order #98 late")
    True
    """
    return " ".join(_DIGITS.sub("0", text.casefold()).split())


def dedupe(texts: Sequence[str]) -> list[int]:
    """Indices of the first ticket of each ``duplicate_key``, in stream order."""
    seen: set[str] = set()
    keep = []
    for i, text in enumerate(texts):
        key = duplicate_key(text)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


@dataclass(frozen=True)
class Stream:
    """The distinct tickets of a stream, ready to embed, and what was dropped from it."""

    texts: list[str]
    n_received: int
    duplicates_removed: int
    language_share: float | None


def prepare_stream(texts: Sequence[str], n_classes: int, config: SelfTrainingConfig) -> Stream:
    """Drop duplicate tickets and check that enough distinct tickets in the right language remain.

    Raises ``NotEnoughTickets`` or ``WrongLanguage`` with a message for the admin.
    """
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if config.read_asks:
        texts = [clean_ask(t) for t in texts]
    keep = dedupe(texts)
    unique = [texts[i] for i in keep]
    needed = config.min_tickets_per_class * n_classes
    if len(unique) < needed:
        dup = f" ({len(texts) - len(unique)} duplicates dropped)" if len(unique) < len(texts) else ""
        raise NotEnoughTickets(
            f"self-training needs at least {config.min_tickets_per_class} distinct tickets per team "
            f"({needed} for {n_classes} teams); the stream has {len(unique)}{dup}"
        )
    share = None
    if config.language:
        share = language_share(
            unique, config.language, config.other_languages, sample=config.language_sample, seed=config.seed
        )
        if share < config.min_language_share:
            raise WrongLanguage(
                f"only {share:.0%} of the stream's tickets read as language {config.language!r} "
                f"(at least {config.min_language_share:.0%} needed): the embedder cannot learn from it"
            )
    return Stream(unique, len(texts), len(texts) - len(unique), share)


# --- pseudo-labels and the head ----------------------------------------------------------------


def margins(logits: np.ndarray) -> np.ndarray:
    """Best minus second-best logit of each row (the whole best logit when there is one class)."""
    if logits.shape[1] == 1:
        return logits[:, 0].copy()
    top2 = np.partition(logits, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def select_pseudo_labels(logits: np.ndarray, keep_fraction: float, max_share: float) -> tuple[np.ndarray, np.ndarray]:
    """The most confident ``keep_fraction`` of each class's predicted rows, by margin; no class flooded.

    A class keeps ``ceil(keep_fraction × its predicted rows)``, capped at ``max_share`` times the fair
    share ``keep_fraction × rows / classes``. Returns the kept row indices (sorted) and their labels.

    >>> idx, y = select_pseudo_labels(np.array([[3., 0.], [1., 0.], [0., 2.], [0., .5]]), 0.5, 3.0)
    >>> idx.tolist(), y.tolist()
    ([0, 2], [0, 1])
    """
    n, k = logits.shape
    predicted = logits.argmax(axis=1)
    margin = margins(logits)
    cap = max(1, math.ceil(max_share * keep_fraction * n / k))
    kept: list[np.ndarray] = []
    for c in range(k):
        rows = np.flatnonzero(predicted == c)
        if not len(rows):
            continue
        rows = rows[np.argsort(-margin[rows], kind="stable")]
        kept.append(rows[: min(cap, math.ceil(keep_fraction * len(rows)))])
    idx = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=int)
    return idx, predicted[idx]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass
class SelfTrainedHead:
    """A linear routing head on ticket embeddings, with the teacher's zero-shot view beside it.

    ``logits = log_softmax(vectors @ coef.T + intercept) + prior_weight × log_softmax(prior_scale ×
    vectors @ prior.T)``: what the stream taught, times what the team descriptions say (``prior``:
    the teacher's unit class vectors). Without a prior (``prior_weight`` 0) the head's own logits.
    Plain arrays, so that it saves to and loads from an ``.npz`` beside the model version.
    """

    classes: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    prior: np.ndarray | None = None
    prior_weight: float = 0.0
    prior_scale: float = 20.0

    def own_logits(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(vectors, dtype=np.float64) @ self.coef.T + self.intercept

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        own = self.own_logits(vectors)
        if self.prior is None or self.prior_weight == 0:
            return own
        prior = self.prior_scale * np.asarray(vectors, dtype=np.float64) @ self.prior.T
        return log_softmax(own) + self.prior_weight * log_softmax(prior)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"classes": np.array(self.classes), "coef": self.coef, "intercept": self.intercept}
        if self.prior is not None:
            out |= {
                "prior": self.prior,
                "prior_weight": np.array(self.prior_weight),
                "prior_scale": np.array(self.prior_scale),
            }
        return out

    @classmethod
    def from_arrays(cls, arrays: Any) -> SelfTrainedHead:
        has_prior = "prior" in arrays
        return cls(
            tuple(str(c) for c in arrays["classes"]),
            np.asarray(arrays["coef"]),
            np.asarray(arrays["intercept"]),
            prior=np.asarray(arrays["prior"]) if has_prior else None,
            prior_weight=float(arrays["prior_weight"]) if has_prior else 0.0,
            prior_scale=float(arrays["prior_scale"]) if has_prior else 20.0,
        )


@dataclass
class SelfTrainingReport:
    """What self-training did, for the command's JSON, the admin page and the promotion guard."""

    n_received: int
    duplicates_removed: int
    language_share: float | None
    n_pseudo_labels: int
    pseudo_labels_per_class: dict[str, int]
    starved: list[str]
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit_logistic(x: np.ndarray, y: np.ndarray, classes: Sequence[str], config: SelfTrainingConfig) -> SelfTrainedHead:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=config.regularization, class_weight="balanced", max_iter=500)
    model.fit(x, y)
    coef, intercept = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
    if len(classes) == 2:  # scikit-learn keeps one weight vector for two classes: the log-odds of the second
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
    return SelfTrainedHead(tuple(classes), coef, intercept)


def fit_head(
    vectors: np.ndarray,
    teacher_logits: np.ndarray,
    class_vectors: np.ndarray,
    classes: Sequence[str],
    config: SelfTrainingConfig | None = None,
) -> tuple[SelfTrainedHead, SelfTrainingReport]:
    """Pseudo-label ``vectors`` (unit ticket embeddings) with ``teacher_logits`` and fit the head.

    ``class_vectors`` (one unit vector per class: its name and description as the teacher embeds
    them) join the training set as one example of their class each, so every class is known to the
    head even when no ticket was confidently its own.
    """
    config = config or SelfTrainingConfig()
    started = time.process_time()
    vectors = np.asarray(vectors, dtype=np.float64)
    teacher_logits = np.asarray(teacher_logits, dtype=np.float64)
    k = len(classes)
    if teacher_logits.shape != (len(vectors), k) or class_vectors.shape != (k, vectors.shape[1]):
        raise ValueError(
            f"shapes disagree: vectors {vectors.shape}, teacher logits {teacher_logits.shape}, "
            f"class vectors {class_vectors.shape}, {k} classes"
        )
    if k < 2:
        raise SelfTrainingError("self-training needs at least two teams to tell apart")
    logits = teacher_logits
    confident: np.ndarray | None = None
    for keep_fraction in config.keep_fractions:
        idx, labels = select_pseudo_labels(logits, keep_fraction, config.max_share)
        if confident is None:  # what the teacher was sure of: a team with (almost) none is starved
            confident = np.bincount(labels, minlength=k)
        head = _fit_logistic(
            np.vstack([vectors[idx], class_vectors]), np.concatenate([labels, np.arange(k)]), classes, config
        )
        head.prior, head.prior_weight, head.prior_scale = class_vectors, config.prior_weight, config.teacher_scale
        logits = head.logits(vectors)
    counts = np.bincount(labels, minlength=k)
    report = SelfTrainingReport(
        n_received=len(vectors),
        duplicates_removed=0,
        language_share=None,
        n_pseudo_labels=int(len(idx)),
        pseudo_labels_per_class={c: int(n) for c, n in zip(classes, counts, strict=True)},
        starved=[c for c, n in zip(classes, confident, strict=True) if n < config.min_pseudo_labels],
        seconds=time.process_time() - started,
        config=asdict(config),
    )
    return head, report


__all__ = [
    "NotEnoughTickets",
    "SelfTrainedHead",
    "SelfTrainingConfig",
    "SelfTrainingError",
    "SelfTrainingReport",
    "Stream",
    "WrongLanguage",
    "dedupe",
    "duplicate_key",
    "fit_head",
    "language_share",
    "log_softmax",
    "margins",
    "prepare_stream",
    "select_pseudo_labels",
]
