"""Zero-shot routing scorers behind one small interface: ``score(texts, classes) -> matrix``.

A scorer reads ticket texts and class specifications (a team's name, description, hypothesis and
optional example tickets) and returns an ``(n_texts, n_classes)`` array of probabilities; each row
sums to 1. ``logits()`` returns the same information before the softmax, which is what calibration
rescales (``softmax(logits / T)``).

This module holds the interface (``Scorer``, ``BaseScorer``), the class specification, input
validation and long-text fitting. Backends:

* ``offline_scorers.EmbeddingScorer`` — cosine similarity between the ticket and each class with the
  sentence-transformers bi-encoder (``encoders.get_embedder``);
* ``offline_scorers.CrossEncoderScorer`` — relevance of (ticket, class description) pairs with the
  cross-encoder;
* ``offline_scorers.EnsembleScorer`` — the embedding scorer, with the cross-encoder re-scoring each
  ticket's shortlist of best classes (the most accurate offline scorer);
* ``nli.NLIScorer`` — an NLI model, scores equal to transformers' zero-shot pipeline;
* ``setfit_scorer.SetFitScorer`` — a trained SetFit model (with zero-shot scores for teams it does not know).

Bad input raises ``InvalidInput`` (a ``ValueError``) before any model runs: empty or blank texts, no
classes, duplicate or empty class names, a hypothesis template without ``{}``.

Scorers read a ticket's *ask* (``mlops.text.clean_ask``): its text without greetings, pleasantries,
signatures and quoted replies, which carry nothing about the team a ticket belongs to but make
polite e-mails look alike. ``BaseScorer.read`` does it once, before any model runs.

Texts longer than a model's window keep their head and their tail (``HEAD_FRACTION`` of the token
budget from the start, the rest from the end): a ticket states its problem first, and the last lines
often say what the customer wants done; the middle (pasted logs, quoted mails) is dropped.

>>> from mlops.inference.offline_scorers import EmbeddingScorer             # doctest: +SKIP
>>> scorer = EmbeddingScorer()                                              # doctest: +SKIP
>>> classes = [ClassSpec("billing", "Billing", "Invoices, refunds, charges on a card."),
...            ClassSpec("login", "Sign-in", "Passwords, two-factor codes, locked accounts.")]
>>> scorer.score(["I was charged twice this month"], classes).round(2)     # doctest: +SKIP
array([[0.97, 0.03]])
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mlops.text import clean_ask

DEFAULT_TEMPLATE = "This ticket is about {}."
# Share of a truncated text's token budget kept from its start; the rest comes from its end.
HEAD_FRACTION = 0.75


class InvalidInput(ValueError):
    """Texts or classes a scorer cannot score (empty text, duplicate class, bad template, ...)."""


@dataclass(frozen=True)
class ClassSpec:
    """One routing class as the scorers see it.

    ``slug`` identifies the class (a team's slug, a data set's label); ``name`` is what a person calls
    it. ``hypothesis`` is an NLI hypothesis for this class (``{}`` in it is replaced by the name);
    empty means the scorer's template. ``examples`` are optional example tickets.

    >>> ClassSpec("billing", "Billing", "Invoices and refunds.").name
    'Billing'
    """

    slug: str
    name: str
    description: str = ""
    hypothesis: str = ""
    examples: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for attr in ("slug", "name", "description", "hypothesis"):
            value = getattr(self, attr)
            if not isinstance(value, str):
                raise InvalidInput(f"class {attr} must be text, got {type(value).__name__}")
        if not self.slug.strip():
            raise InvalidInput(f"class {self.name!r} has an empty slug")
        if not self.name.strip():
            raise InvalidInput(f"class {self.slug!r} has an empty name")
        examples = tuple(self.examples)
        if any(not isinstance(e, str) or not e.strip() for e in examples):
            raise InvalidInput(f"class {self.slug!r} has an empty or non-text example")
        object.__setattr__(self, "examples", examples)

    @classmethod
    def from_label(cls, label: str, description: str = "", **kwargs: Any) -> ClassSpec:
        """A class from a data set label such as ``card_arrival`` (name ``card arrival``)."""
        return cls(slug=label, name=humanize_label(label), description=description, **kwargs)


def humanize_label(label: str) -> str:
    """``Refund_not_showing_up`` → ``refund not showing up``: how a person would say a label."""
    text = label.replace("_", " ").replace("-", " ").strip(" ?!.")
    text = " ".join(text.split())
    return text.lower() if text.isupper() or text[:1].isupper() and text[1:].islower() else text


def validate_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInput("texts must be a list of strings, not one string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise InvalidInput(f"text {i} is {type(text).__name__}, not a string")
        if not text.strip():
            raise InvalidInput(f"text {i} is empty or only whitespace: there is nothing to route")
    return out


def validate_classes(classes: Sequence[ClassSpec]) -> list[ClassSpec]:
    out = list(classes)
    if not out:
        raise InvalidInput("no classes to score against: add at least one active team")
    seen_slugs: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for i, spec in enumerate(out):
        if not isinstance(spec, ClassSpec):
            raise InvalidInput(f"class {i} is {type(spec).__name__}, not a ClassSpec")
        slug, name = spec.slug.strip().casefold(), " ".join(spec.name.split()).casefold()
        if slug in seen_slugs:
            raise InvalidInput(f"duplicate class {spec.slug!r} (classes {seen_slugs[slug]} and {i})")
        if name in seen_names:
            raise InvalidInput(f"duplicate class name {spec.name!r} (classes {seen_names[name]} and {i})")
        seen_slugs[slug], seen_names[name] = i, i
    return out


def validate_template(template: str) -> str:
    """A hypothesis template must contain ``{}`` (where the class name goes) and nothing else to fill."""
    if not isinstance(template, str) or "{}" not in template:
        raise InvalidInput(f"hypothesis template {template!r} has no {{}} where the class name goes")
    try:
        filled = template.format("x")
    except (IndexError, KeyError, ValueError) as exc:
        raise InvalidInput(f"hypothesis template {template!r} cannot be filled with a class name: {exc}") from None
    if filled == template:
        raise InvalidInput(f"hypothesis template {template!r} has no {{}} where the class name goes")
    return template


def hypotheses_for(classes: Sequence[ClassSpec], template: str) -> list[str]:
    """The NLI hypothesis of each class: its own (``{}`` filled with its name) or the template's."""
    out = []
    for spec in classes:
        own = spec.hypothesis.strip()
        if own:
            try:
                out.append(own.format(spec.name) if "{}" in own else own)
            except (IndexError, KeyError, ValueError) as exc:
                raise InvalidInput(f"hypothesis of class {spec.slug!r} cannot be filled: {exc}") from None
        else:
            out.append(template.format(spec.name))
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def head_tail_ids(ids: Sequence[int], budget: int, head_fraction: float = HEAD_FRACTION) -> list[int]:
    """Keep ``budget`` token ids: the first ``head_fraction`` of them and the rest from the end."""
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    if budget <= 0:
        return []
    head = max(1, min(budget, round(budget * head_fraction)))
    tail = budget - head
    return ids[:head] + (ids[len(ids) - tail :] if tail else [])


class TextFitter:
    """Shortens texts to a token budget (head + tail) with a model's own ``tokenizer.json``.

    Cuts happen at token boundaries of the original string, so the model sees real words.
    """

    def __init__(self, tokenizer_json: str | Path, head_fraction: float = HEAD_FRACTION) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.head_fraction = head_fraction

    @classmethod
    def for_model_dir(cls, path: str | Path | None) -> TextFitter | None:
        if path and (Path(path) / "tokenizer.json").exists():
            return cls(Path(path) / "tokenizer.json")
        return None

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def fit(self, texts: Sequence[str], budget: int) -> list[str]:
        out = list(texts)
        encodings = self.tokenizer.encode_batch(out, add_special_tokens=False)
        for i, enc in enumerate(encodings):
            n = len(enc.ids)
            if n <= budget:
                continue
            head = max(1, round(budget * self.head_fraction))
            tail = budget - head
            text = out[i]
            head_end = enc.offsets[head - 1][1]
            if tail > 0:
                tail_start = enc.offsets[n - tail][0]
                out[i] = text[:head_end] + "\n" + text[tail_start:]
            else:
                out[i] = text[:head_end]
        return out


@runtime_checkable
class Scorer(Protocol):
    """What routing needs from a scorer. ``name`` is its registry name."""

    name: str
    model_ref: str
    version: str

    def score(self, texts: Sequence[str], classes: Sequence[ClassSpec]) -> np.ndarray: ...

    def logits(self, texts: Sequence[str], classes: Sequence[ClassSpec]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class BaseScorer:
    """Validation and the softmax shared by the backends; subclasses implement ``_logits``."""

    name = "base"
    model_ref = ""
    version = ""
    # "ask": the model reads ``clean_ask`` of each ticket; "text": the ticket as written.
    reads = "ask"

    def read(self, texts: list[str]) -> list[str]:
        """What the model reads of each ticket (the same for scoring and for training on tickets)."""
        return [clean_ask(text) for text in texts] if self.reads == "ask" else list(texts)

    def logits(self, texts: Sequence[str], classes: Sequence[ClassSpec]) -> np.ndarray:
        """Scores before the softmax, ``(n_texts, n_classes)`` float64; calibration divides these by T."""
        texts = validate_texts(texts)
        classes = validate_classes(classes)
        if not texts:
            return np.zeros((0, len(classes)), dtype=np.float64)
        return np.asarray(self._logits(self.read(texts), classes), dtype=np.float64)

    def score(self, texts: Sequence[str], classes: Sequence[ClassSpec]) -> np.ndarray:
        """Single-label probabilities, ``(n_texts, n_classes)``; each row sums to 1."""
        return softmax(self.logits(texts, classes), axis=1)

    def _logits(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Settings recorded on the ModelVersion row of what this scorer produces."""
        return {"scorer": self.name, "model_ref": self.model_ref, "scorer_version": self.version, "reads": self.reads}

    @property
    def config_hash(self) -> str:
        # "measured" holds numbers measured at load (precision agreement): recorded, not identity.
        settings = {k: v for k, v in self.describe().items() if k != "measured"}
        blob = json.dumps(settings, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def scorer_summary(scorer: Scorer) -> dict[str, Any]:
    """Plain dict for logs and JSON reports."""
    return {"name": scorer.name, "model_ref": scorer.model_ref, "version": scorer.version}


__all__ = [
    "DEFAULT_TEMPLATE",
    "BaseScorer",
    "ClassSpec",
    "InvalidInput",
    "Scorer",
    "TextFitter",
    "head_tail_ids",
    "humanize_label",
    "hypotheses_for",
    "softmax",
    "validate_classes",
    "validate_template",
    "validate_texts",
]
