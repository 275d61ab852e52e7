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

Precision per machine (``backend``/``dtype``, both ``auto`` by default): on a GPU, or a CPU that
computes bfloat16 natively (AMX/AVX512-BF16), torch in bfloat16 (float16 on GPUs without it); on
other CPUs onnxruntime on an ONNX export of the float32 model (exported once, cached on disk), which
gives torch float32's scores to ~1e-6 and is faster on an AVX2 CPU (``bench/bench_routing.py``).
``dtype="int8"`` quantizes that export dynamically and is used only when it keeps the float32
ranking of a fixed probe set; otherwise the float32 export serves and a warning says why. The choice
is part of ``version`` (``.../onnx-float32``) and its measured agreement with float32 is in
``describe()["measured"]``, stored on the ModelVersion row.

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
from pathlib import Path
from typing import Any

import numpy as np

from .encoders import ModelUnavailable, _fingerprint, padded_batches, resolve_device, resolve_dtype
from .onnx_graphs import export_onnx, onnx_cache_dir, onnx_session, quantize_int8
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
BACKENDS = ("auto", "torch", "onnx")
NLI_DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")
# onnxruntime float32 on ~512-token batches: cache-sized activations, fastest on AVX2 (as for the reranker).
ONNX_BATCH_TOKENS = 512
# The fixed pairs on which a reduced precision is compared with float32 when the model loads.
PROBE_TEXTS = (
    "I was charged twice for my subscription this month, please refund one payment.",
    "I cannot log in since I reset my password yesterday.",
    "Where is my parcel? The order was due last week.",
    "My card was declined at the shop although my balance is fine.",
    "Please close my account and delete my data.",
    "The invoice shows the wrong company address.",
    "hello, the app crashes when I open the settings page",
    "Can you help me change the e-mail address on my account?",
)
PROBE_HYPOTHESES = tuple(
    f"This ticket is about {topic}."
    for topic in ("billing", "sign-in", "delivery", "card payments", "privacy", "invoices", "bugs", "account settings")
)
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
    ``backend``/``dtype`` (``auto``) choose the runtime per machine (module docstring); ONNX exports
    are cached in ``cache_dir`` (default: a ``triage-onnx`` folder in the temporary directory).
    """

    name = "nli"
    # As written: its scores are defined as the zero-shot pipeline's on the same text, and no NLI model
    # could be measured on the realistic help desks offline (the ask helped the bi-encoder there).
    reads = "text"

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
        backend: str = "auto",
        dtype: str = "auto",
        cache_dir: str | Path | None = None,
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
        self.model.eval()
        self.config = self.model.config
        self.input_names = list(self.tokenizer.model_input_names)
        self.max_length = self._max_length(max_length)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.pad_type_id = int(getattr(self.tokenizer, "pad_token_type_id", 0) or 0)
        self._backend, self._template = self._fast_path()
        commit = getattr(self.config, "_commit_hash", None)
        path = getattr(self.config, "_name_or_path", model_name_or_path)
        weights = commit[:12] if commit else _fingerprint(str(path))
        self._lock = threading.Lock()
        self.session = None
        self._onnx_inputs: set[str] = set()
        self.runtime, self.dtype = choose_runtime(backend, dtype, self.device)
        self.measured: dict[str, Any] = {}
        self._load_runtime(weights, Path(cache_dir) if cache_dir else None)
        # Backend and precision are part of the version, as for the cross-encoder: they move the scores.
        self.version = f"{model_name_or_path}@{weights}/{self.runtime}-{self.dtype}"

    # --- set-up ---------------------------------------------------------------------------------
    def _load_runtime(self, weights: str, cache_dir: Path | None) -> None:
        """Put the chosen runtime in place and measure how far it is from float32 on the probe pairs."""
        import torch

        self.model.to(self.device)
        if self.runtime == "torch" and self.dtype == "float32":
            return
        ids, types = self._encode_pairs(list(PROBE_TEXTS), list(PROBE_HYPOTHESES), _probe_classes())
        reference = self._forward(ids, types)  # float32 torch, before anything changes
        if self.runtime == "torch":
            self.model.to(dtype=getattr(torch, self.dtype))
        else:
            exported = export_onnx(self.model, self.input_names, onnx_cache_dir(cache_dir), weights)
            graph: str | bytes = str(exported)
            if self.dtype == "int8":
                graph = quantize_int8(exported)
            self._use_session(graph)
            self.measured = {"agreement_with_float32": self._agreement(reference, ids, types)}
            if self.dtype == "int8" and not self.measured["agreement_with_float32"]["same_ranking"]:
                logger.warning(
                    "int8 NLI model %s changes the float32 ranking of the probe pairs (%s); serving float32",
                    self.model_ref,
                    self.measured["agreement_with_float32"],
                )
                self.dtype = "float32"
                self._use_session(str(exported))
                self.measured = {"agreement_with_float32": self._agreement(reference, ids, types)}
            self.model = None  # onnxruntime holds the weights now; do not keep a second copy
            return
        self.measured = {"agreement_with_float32": self._agreement(reference, ids, types)}

    def _use_session(self, graph: str | bytes) -> None:
        self.session = onnx_session(graph)
        self._onnx_inputs = {i.name for i in self.session.get_inputs()}

    def _agreement(self, reference: np.ndarray, ids: list[list[int]], types: list[list[int]]) -> dict[str, Any]:
        """Largest probability difference and whether every probe ticket ranks the classes alike."""
        shape = (len(PROBE_TEXTS), len(PROBE_HYPOTHESES), -1)
        ref = softmax(reference.reshape(shape)[..., self.entailment_id], axis=1)
        got = softmax(self._forward(ids, types).reshape(shape)[..., self.entailment_id], axis=1)
        same = bool((np.argsort(-ref, axis=1, kind="stable") == np.argsort(-got, axis=1, kind="stable")).all())
        return {
            "probe_pairs": len(ids),
            "max_abs_score_difference": float(f"{float(np.abs(ref - got).max()):.1e}"),
            "same_ranking": same,
        }

    def _max_length(self, requested: int | None) -> int:
        if requested:
            return requested
        limit = getattr(self.tokenizer, "model_max_length", None)
        if limit and limit < _HUGE:
            return int(limit)
        return int(getattr(self.config, "max_position_embeddings", 512) or 512)

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
            "runtime": f"{self.runtime}-{self.dtype}",
            "measured": self.measured,
        }

    # --- scoring --------------------------------------------------------------------------------
    def nli_logits(self, texts: Sequence[str], classes: Sequence[ClassSpec]) -> np.ndarray:
        """The model's logits for every (text, class) pair: ``(n_texts, n_classes, n_labels)``."""
        texts = validate_texts(texts)
        classes = validate_classes(classes)
        hypotheses = hypotheses_for(classes, self.template)
        if not texts:
            return np.zeros((0, len(classes), self.config.num_labels), dtype=np.float32)
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

        out = np.empty((len(ids), self.config.num_labels), dtype=np.float32)
        budget = ONNX_BATCH_TOKENS if self.session is not None else self.batch_size * self.max_length
        batches = padded_batches(ids, types, self.batch_size, budget, pad_id=self.pad_id, pad_type_id=self.pad_type_id)
        with self._lock, torch.inference_mode():
            for idx, feed in batches:
                if self.session is not None:
                    out[idx] = self.session.run(None, {k: v for k, v in feed.items() if k in self._onnx_inputs})[0]
                    continue
                batch = {k: torch.from_numpy(v).to(self.device) for k, v in feed.items() if k in self.input_names}
                out[idx] = self.model(**batch).logits.float().cpu().numpy()
        return out


def choose_runtime(backend: str, dtype: str, device: str) -> tuple[str, str]:
    """(runtime, precision) for a device: see the module docstring.

    >>> choose_runtime("torch", "float32", "cpu")
    ('torch', 'float32')
    >>> choose_runtime("auto", "int8", "cpu")
    ('onnx', 'int8')
    """
    if backend not in BACKENDS:
        raise ModelUnavailable(f"unknown NLI backend {backend!r} ({', '.join(BACKENDS)})")
    if dtype not in NLI_DTYPES:
        raise ModelUnavailable(f"unknown NLI dtype {dtype!r} ({', '.join(NLI_DTYPES)})")
    on_cpu = device == "cpu"
    if dtype == "int8" or backend == "onnx":
        if not on_cpu or backend == "torch" or dtype not in ("int8", "float32", "auto"):
            raise ModelUnavailable(f"the NLI onnx runtime runs float32 or int8 on the CPU, not {dtype} on {device}")
        return "onnx", "int8" if dtype == "int8" else "float32"
    resolved = resolve_dtype(dtype, device)
    if backend == "auto" and on_cpu and resolved == "float32":
        return "onnx", "float32"
    return "torch", resolved


def _probe_classes() -> list[ClassSpec]:
    return [ClassSpec(f"probe-{i}", h) for i, h in enumerate(PROBE_HYPOTHESES)]


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
