"""NLI zero-shot scorer: any transformers sequence-classification model trained on NLI.

Each (ticket, hypothesis) pair is a premise/hypothesis pair; the model's entailment logit says how
well the class fits. Scores equal those of ``transformers.pipeline("zero-shot-classification")`` on
the same model, template and labels:

* single-label: softmax of the entailment logits across the classes;
* multi-label (and a single class, as the pipeline does): per class, softmax over
  (contradiction, entailment), the probability of entailment.

The entailment and contradiction indices are read from the model config's labels, case-insensitively
(``entailment``/``ENTAILMENT``...; a two-way model's ``not_entailment`` counts as contradiction). A
config without them raises ``NLIConfigError``. The pipeline, unlike this scorer, takes index 0 (or the
last one) as contradiction whatever the config says; the two agree on the usual label orders.

Where the speed comes from: the ticket and each hypothesis are tokenized once (not once per pair), the
pairs are assembled from the tokenizer's own special-token template, sorted by length and run in
padded batches under ``torch.inference_mode()``. The pipeline runs one forward pass per pair.

Texts beyond the model's length: the premise is cut to the room the hypothesis leaves, keeping its
head and tail (``truncation="head_tail"``, the default; ``"head"`` keeps only the start, as the
pipeline does). A hypothesis that alone does not fit raises ``InvalidInput``.

>>> nli = NLIScorer("cross-encoder/nli-deberta-v3-small")                         # doctest: +SKIP
>>> classes = [ClassSpec("billing", "billing"), ClassSpec("login", "sign-in")]      # doctest: +SKIP
>>> nli.score(["I was charged twice"], classes)                                    # doctest: +SKIP
array([[0.93, 0.07]])
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .encoders import ModelUnavailable, _fingerprint, resolve_device
from .scorers import (
    DEFAULT_TEMPLATE,
    HEAD_FRACTION,
    BaseScorer,
    ClassSpec,
    InvalidInput,
    head_tail_ids,
    hypotheses_for,
    softmax,
    validate_classes,
    validate_template,
    validate_texts,
)

logger = logging.getLogger(__name__)

_HUGE = 1_000_000  # tokenizers without a limit report model_max_length as ~1e30
_NOT_ENTAILMENT = {"not_entailment", "not entailment", "non_entailment", "non-entailment", "not-entailment"}


class NLIConfigError(ModelUnavailable):
    """The model's config does not say which output is entailment (or contradiction)."""


def nli_label_indices(id2label: dict[Any, str]) -> tuple[int, int]:
    """(entailment index, contradiction index) from a config's ``id2label``, case-insensitively.

    >>> nli_label_indices({0: "CONTRADICTION", 1: "Neutral", 2: "ENTAILMENT"})
    (2, 0)
    """
    labels = {int(i): str(label) for i, label in id2label.items()}
    entail = [i for i, label in labels.items() if label.strip().lower().startswith("entail")]
    contra = [i for i, label in labels.items() if label.strip().lower().startswith("contradict")]
    if not contra:
        contra = [i for i, label in labels.items() if label.strip().lower() in _NOT_ENTAILMENT]
    if len(entail) != 1:
        raise NLIConfigError(
            f"the model config's labels {labels} have no single 'entailment' label; an NLI model for "
            "zero-shot routing must name its outputs (id2label), e.g. entailment, neutral, contradiction"
        )
    if len(contra) != 1:
        raise NLIConfigError(
            f"the model config's labels {labels} have no single 'contradiction' (or 'not_entailment') label"
        )
    return entail[0], contra[0]


class _PairTemplate:
    """Where a tokenizer puts its special tokens around a (premise, hypothesis) pair.

    Read once from the tokenizer itself (``[CLS] a [SEP] b [SEP]``, ``<s> a </s></s> b </s>``, ...),
    so pairs can be assembled from token ids tokenized once per text and once per hypothesis.
    """

    def __init__(self, prefix, mid, suffix, a_type: int, b_type: int) -> None:
        self.prefix, self.mid, self.suffix = prefix, mid, suffix  # lists of (id, type id)
        self.a_type, self.b_type = a_type, b_type
        self.n_special = len(prefix) + len(mid) + len(suffix)

    @classmethod
    def read(cls, backend) -> _PairTemplate | None:
        enc = backend.encode("premise", "hypothesis", add_special_tokens=True)
        seq, ids, types = enc.sequence_ids, enc.ids, enc.type_ids
        regions: list[tuple[Any, list[int]]] = []
        for pos, s in enumerate(seq):
            if regions and regions[-1][0] == s:
                regions[-1][1].append(pos)
            else:
                regions.append((s, [pos]))
        kinds = [s for s, _ in regions]
        # Expect [special*] 0 [special*] 1 [special*]
        body = [k for k in kinds if k is not None]
        if body != [0, 1]:
            return None
        a_at, b_at = kinds.index(0), kinds.index(1)
        if b_at - a_at > 2 or any(k is not None for k in kinds[:a_at] + kinds[b_at + 1 :]):
            return None

        def specials(region_index: int | None) -> list[tuple[int, int]]:
            if region_index is None:
                return []
            return [(ids[p], types[p]) for p in regions[region_index][1]]

        a_types = {types[p] for p in regions[a_at][1]}
        b_types = {types[p] for p in regions[b_at][1]}
        if len(a_types) != 1 or len(b_types) != 1:
            return None
        prefix = specials(0) if a_at == 1 else []
        mid = specials(a_at + 1) if b_at - a_at == 2 else []
        suffix = specials(b_at + 1) if b_at + 1 < len(regions) else []
        return cls(prefix, mid, suffix, a_types.pop(), b_types.pop())

    def build(self, a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
        ids = [i for i, _ in self.prefix] + a + [i for i, _ in self.mid] + b + [i for i, _ in self.suffix]
        types = (
            [t for _, t in self.prefix]
            + [self.a_type] * len(a)
            + [t for _, t in self.mid]
            + [self.b_type] * len(b)
            + [t for _, t in self.suffix]
        )
        return ids, types


class NLIScorer(BaseScorer):
    """Zero-shot classification with an NLI model (hub id or local path), batched.

    ``template`` fills each class name into a hypothesis (default ``This ticket is about {}.``); a
    class's own ``hypothesis`` wins over it. ``batch_size`` pairs go through the model at a time.
    """

    name = "nli"

    def __init__(
        self,
        model_name_or_path: str,
        *,
        template: str = DEFAULT_TEMPLATE,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        truncation: str = "head_tail",
        head_fraction: float = HEAD_FRACTION,
        revision: str | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        self.template = validate_template(template)
        if truncation not in ("head_tail", "head"):
            raise ValueError(f"truncation must be 'head_tail' or 'head', got {truncation!r}")
        self.truncation = truncation
        self.head_fraction = head_fraction
        self.batch_size = batch_size
        self.model_ref = model_name_or_path
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            kwargs: dict[str, Any] = {"revision": revision}
            if local_files_only is not None:
                kwargs["local_files_only"] = local_files_only
            self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **kwargs)
            self.model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, **kwargs)
        except Exception as exc:  # missing files, no network, a config transformers does not know
            raise ModelUnavailable(f"NLI model {model_name_or_path!r} could not be loaded ({_short(exc)})") from exc
        try:
            self.entailment_id, self.contradiction_id = nli_label_indices(self.model.config.id2label)
        except NLIConfigError as exc:
            raise NLIConfigError(f"NLI model {model_name_or_path!r} could not be loaded ({exc})") from None
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.model.eval()
        self.input_names = list(self.tokenizer.model_input_names)
        self.max_length = self._max_length(max_length)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.pad_type_id = int(getattr(self.tokenizer, "pad_token_type_id", 0) or 0)
        self._backend, self._template = self._fast_path()
        commit = getattr(self.model.config, "_commit_hash", None)
        path = getattr(self.model.config, "_name_or_path", model_name_or_path)
        self.version = f"{model_name_or_path}@{commit[:12] if commit else _fingerprint(str(path))}"
        self._lock = threading.Lock()

    # --- set-up ---------------------------------------------------------------------------------
    def _max_length(self, requested: int | None) -> int:
        if requested:
            return requested
        limit = getattr(self.tokenizer, "model_max_length", None)
        if limit and limit < _HUGE:
            return int(limit)
        return int(getattr(self.model.config, "max_position_embeddings", 512) or 512)

    def _fast_path(self):
        """The Rust tokenizer and pair template, when assembling ids ourselves matches the tokenizer."""
        backend = getattr(self.tokenizer, "_tokenizer", None)
        if backend is None:
            return None, None
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(backend.to_str())  # our own copy: no truncation or padding state
        backend.no_truncation()
        backend.no_padding()
        template = _PairTemplate.read(backend)
        if template is None:
            return None, None
        samples = [("Grüße — my card was declined twice at the café!", "This ticket is about payments.")]
        for premise, hypothesis in samples:
            expected = self.tokenizer(premise, hypothesis)
            a = backend.encode(premise, add_special_tokens=False).ids
            b = backend.encode(hypothesis, add_special_tokens=False).ids
            ids, types = template.build(a, b)
            if list(expected["input_ids"]) != ids or (
                "token_type_ids" in expected and list(expected["token_type_ids"]) != types
            ):
                logger.info("tokenizer of %s needs its own pair encoding; using the slower path", self.model_ref)
                return None, None
        return backend, template

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "template": self.template,
            "entailment_id": self.entailment_id,
            "contradiction_id": self.contradiction_id,
            "max_length": self.max_length,
            "truncation": self.truncation if self.truncation == "head" else f"head_tail({self.head_fraction})",
        }

    # --- scoring --------------------------------------------------------------------------------
    def nli_logits(self, texts: Sequence[str], classes: Sequence[ClassSpec]) -> np.ndarray:
        """The model's logits for every (text, class) pair: ``(n_texts, n_classes, n_labels)``."""
        texts = validate_texts(texts)
        classes = validate_classes(classes)
        hypotheses = hypotheses_for(classes, self.template)
        if not texts:
            return np.zeros((0, len(classes), self.model.config.num_labels), dtype=np.float32)
        ids, types = self._encode_pairs(texts, hypotheses, classes)
        flat = self._forward(ids, types)
        return flat.reshape(len(texts), len(classes), -1)

    def _logits(self, texts: list[str], classes: list[ClassSpec]) -> np.ndarray:
        return self.nli_logits(texts, classes)[..., self.entailment_id]

    def score(self, texts: Sequence[str], classes: Sequence[ClassSpec], *, multi_label: bool = False) -> np.ndarray:
        """Probabilities per (text, class), as the zero-shot pipeline computes them.

        Single-label rows sum to 1; with ``multi_label=True`` (or one class) each class is judged on
        its own: P(entailment) against contradiction.
        """
        logits = self.nli_logits(texts, classes)
        if multi_label or logits.shape[1] == 1:
            pair = logits[..., [self.contradiction_id, self.entailment_id]]
            return softmax(pair, axis=-1)[..., 1]
        return softmax(logits[..., self.entailment_id], axis=1)

    def _encode_pairs(self, texts: list[str], hypotheses: list[str], classes: list[ClassSpec]):
        if self._backend is None:
            return self._encode_pairs_slow(texts, hypotheses, classes)
        text_ids = [e.ids for e in self._backend.encode_batch(texts, add_special_tokens=False)]
        hyp_ids = [e.ids for e in self._backend.encode_batch(hypotheses, add_special_tokens=False)]
        room = self._room(hyp_ids, classes, self._template.n_special)
        ids: list[list[int]] = []
        types: list[list[int]] = []
        for a in text_ids:
            for h, r in zip(hyp_ids, room, strict=True):
                pair_ids, pair_types = self._template.build(a if len(a) <= r else self._cut(a, r), h)
                ids.append(pair_ids)
                types.append(pair_types)
        return ids, types

    def _encode_pairs_slow(self, texts: list[str], hypotheses: list[str], classes: list[ClassSpec]):
        """Tokenizers we cannot assemble pairs for: let them encode each pair (head truncation only)."""
        hyp_ids = [self.tokenizer.encode(h, add_special_tokens=False) for h in hypotheses]
        self._room(hyp_ids, classes, self.tokenizer.num_special_tokens_to_add(pair=True))
        premises = [t for t in texts for _ in hypotheses]
        enc = self.tokenizer(premises, hypotheses * len(texts), truncation="only_first", max_length=self.max_length)
        ids = [list(x) for x in enc["input_ids"]]
        types = [list(x) for x in enc["token_type_ids"]] if "token_type_ids" in enc else [[0] * len(x) for x in ids]
        return ids, types

    def _room(self, hypothesis_ids: list[list[int]], classes: list[ClassSpec], n_special: int) -> list[int]:
        """Tokens left for the premise next to each hypothesis."""
        room = []
        for spec, h in zip(classes, hypothesis_ids, strict=True):
            r = self.max_length - n_special - len(h)
            if r < 1:
                raise InvalidInput(
                    f"the hypothesis of class {spec.slug!r} is {len(h)} tokens; with the ticket a pair must fit "
                    f"in {self.max_length} tokens"
                )
            room.append(r)
        return room

    def _cut(self, ids: list[int], room: int) -> list[int]:
        if self.truncation == "head":
            return ids[:room]
        return head_tail_ids(ids, room, self.head_fraction)

    def _forward(self, ids: list[list[int]], types: list[list[int]]) -> np.ndarray:
        import torch

        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(ids), self.model.config.num_labels), dtype=np.float32)
        want_types = "token_type_ids" in self.input_names
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                width = int(lengths[idx].max())
                input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                type_ids = np.full((len(idx), width), self.pad_type_id, dtype=np.int64)
                for row, i in enumerate(idx):
                    n = lengths[i]
                    input_ids[row, :n] = ids[i]
                    mask[row, :n] = 1
                    type_ids[row, :n] = types[i]
                batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
                if want_types:
                    batch["token_type_ids"] = torch.from_numpy(type_ids)
                batch = {k: v.to(self.device) for k, v in batch.items() if k in self.input_names}
                logits = self.model(**batch).logits
                out[idx] = logits.float().cpu().numpy()
        return out


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
