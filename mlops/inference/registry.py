"""Scorer registry: names → backends, each built once per process on first use.

``get_scorer("embedding")`` returns the process-wide scorer for the current settings; ``resolve_scorer``
answers the routing setting (``TRIAGE_ROUTING_SCORER``): ``auto`` is the NLI model when it loads, else
the best offline scorer, with the reason the NLI model could not be used.

Backends are dotted paths imported on first use, so importing this module stays cheap; another
module adds a backend with ``register_scorer("setfit", "mlops.inference.setfit_scorer.build")``.

>>> choice = resolve_scorer("auto")                                  # doctest: +SKIP
>>> choice.scorer.name, choice.fallback_reason                       # doctest: +SKIP
('ensemble', "NLI model 'cross-encoder/nli-deberta-v3-small' could not be loaded: ...")
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .encoders import ModelUnavailable
from .scorers import Scorer

logger = logging.getLogger(__name__)

SCORERS: dict[str, str] = {
    "nli": "mlops.inference.registry.build_nli_scorer",
    "embedding": "mlops.inference.registry.build_embedding_scorer",
    "cross-encoder": "mlops.inference.registry.build_cross_encoder_scorer",
    "ensemble": "mlops.inference.registry.build_ensemble_scorer",
}
# Scorers that need no labeled data; the order is the fallback order when NLI cannot load.
ZERO_SHOT_SCORERS = ("nli", "ensemble", "embedding", "cross-encoder")
OFFLINE_FALLBACKS = ("ensemble", "embedding", "cross-encoder")
# Trained versions load from their ModelVersion row (artifact path), not from settings.
VERSION_LOADERS: dict[str, str] = {
    "setfit": "mlops.inference.setfit_scorer.scorer_for_version",
    "self-trained": "mlops.inference.selftrain.scorer_for_version",
}
# A model that failed to load is tried again after this many seconds, not on every ticket.
RETRY_FAILED_AFTER_SECONDS = 600.0


def register_scorer(name: str, dotted_path: str) -> None:
    """Add (or replace) a backend: ``dotted_path`` names a function returning a Scorer."""
    SCORERS[name] = dotted_path
    _cache.clear()


def _settings() -> Any:
    from django.conf import settings

    return settings


def build_nli_scorer() -> Scorer:
    from .availability import probe_model
    from .nli import NLIScorer

    s = _settings()
    loadable, reason = probe_model(s.TRIAGE_NLI_MODEL)
    if not loadable:  # our reason (e.g. "the hub is off"), not transformers' advice to check the network
        raise ModelUnavailable(f"NLI model {s.TRIAGE_NLI_MODEL!r} could not be loaded ({reason})")
    return NLIScorer(
        s.TRIAGE_NLI_MODEL,
        template=s.TRIAGE_HYPOTHESIS_TEMPLATE,
        device=s.TRIAGE_INFERENCE_DEVICE,
        backend=s.TRIAGE_NLI_BACKEND,
        dtype=s.TRIAGE_NLI_DTYPE,
        cache_dir=s.TRIAGE_ARTIFACTS_DIR / "onnx",
    )


def build_embedding_scorer() -> Scorer:
    from .offline_scorers import EmbeddingScorer

    return EmbeddingScorer()


def build_cross_encoder_scorer() -> Scorer:
    from .offline_scorers import CrossEncoderScorer

    return CrossEncoderScorer()


def build_ensemble_scorer() -> Scorer:
    from .offline_scorers import EnsembleScorer

    return EnsembleScorer(get_scorer("embedding"), get_scorer("cross-encoder"))  # type: ignore[arg-type]


def _settings_key(name: str) -> tuple:
    s = _settings()
    return (
        name,
        SCORERS.get(name),
        s.TRIAGE_NLI_MODEL if name == "nli" else None,
        s.TRIAGE_HYPOTHESIS_TEMPLATE if name == "nli" else None,
        (s.TRIAGE_NLI_BACKEND, s.TRIAGE_NLI_DTYPE) if name == "nli" else None,
        s.TRIAGE_EMBEDDER_MODEL,
        s.TRIAGE_RERANKER_MODEL,
        s.TRIAGE_INFERENCE_DEVICE,
    )


_cache: dict[tuple, Scorer | tuple[float, ModelUnavailable]] = {}
_lock = threading.RLock()


def get_scorer(name: str) -> Scorer:
    """The scorer called ``name`` for the current settings, loaded once per process.

    Raises ``KeyError`` for an unknown name and ``ModelUnavailable`` when its model cannot load (the
    failure is remembered for ``RETRY_FAILED_AFTER_SECONDS``, so a missing model is not retried on
    every ticket).
    """
    if name not in SCORERS:
        raise KeyError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}")
    key = _settings_key(name)
    with _lock:
        cached = _cache.get(key)
        if isinstance(cached, tuple):
            failed_at, error = cached
            if time.monotonic() - failed_at < RETRY_FAILED_AFTER_SECONDS:
                raise error
            cached = None
        if cached is not None:
            return cached
        module_name, _, attr = SCORERS[name].rpartition(".")
        builder: Callable[[], Scorer] = getattr(importlib.import_module(module_name), attr)
        try:
            scorer = builder()
        except ModelUnavailable as exc:
            _cache[key] = (time.monotonic(), exc)
            raise
        except Exception as exc:  # any load failure is "unavailable" to the router, with its reason
            error = ModelUnavailable(f"{name} scorer could not be loaded: {type(exc).__name__}: {exc}")
            _cache[key] = (time.monotonic(), error)
            raise error from exc
        _cache[key] = scorer
        return scorer


def scorer_for_version(version: Any) -> Scorer:
    """The scorer of a ``mlops.ModelVersion`` row: a trained one from its files, a zero-shot one by name.

    Raises ``ModelUnavailable`` when it cannot load here.
    """
    loader_path = VERSION_LOADERS.get(version.scorer)
    if loader_path is not None:
        module_name, _, attr = loader_path.rpartition(".")
        try:
            loader = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelUnavailable(f"no loader for {version.scorer} versions ({exc})") from exc
        return loader(version)
    try:
        return get_scorer(version.scorer)
    except KeyError as exc:
        raise ModelUnavailable(str(exc)) from None


def get_zero_shot_scorer() -> Scorer:
    """The scorer routing uses without a trained model (``TRIAGE_ROUTING_SCORER``, with fallbacks)."""
    return resolve_scorer().scorer


def forget_scorers() -> None:
    """Drop every cached scorer and remembered failure (tests, settings changes)."""
    with _lock:
        _cache.clear()


@dataclass(frozen=True)
class ScorerChoice:
    """The scorer that routes, the setting that asked for it, and why it is not what was asked for."""

    scorer: Scorer
    requested: str
    fallback_reason: str = ""

    @property
    def degraded(self) -> bool:
        return bool(self.fallback_reason)

    @property
    def message(self) -> str:
        if not self.fallback_reason:
            return f"routing with {self.scorer.name} ({self.scorer.model_ref})"
        return f"{self.fallback_reason}; routing with {self.scorer.name}"


def resolve_scorer(requested: str | None = None) -> ScorerChoice:
    """The scorer for ``requested`` (default: ``TRIAGE_ROUTING_SCORER``), falling back when it cannot load.

    ``auto`` and ``nli`` fall back to the best offline scorer when the NLI model cannot load; an
    offline scorer that cannot load falls back to the next one. Raises ``ModelUnavailable`` only when
    nothing at all can load.
    """
    requested = (requested or _settings().TRIAGE_ROUTING_SCORER or "auto").strip()
    first = "nli" if requested == "auto" else requested
    if first not in SCORERS:
        raise KeyError(f"unknown routing scorer {requested!r}; known: auto, {', '.join(sorted(SCORERS))}")
    try:
        return ScorerChoice(get_scorer(first), requested)
    except ModelUnavailable as exc:
        reason = str(exc)
    for name in OFFLINE_FALLBACKS:
        if name == first:
            continue
        try:
            return ScorerChoice(get_scorer(name), requested, fallback_reason=reason)
        except ModelUnavailable as exc:
            reason = f"{reason}; {exc}"
    raise ModelUnavailable(f"no routing scorer can be loaded: {reason}")


def warm_routing_scorer() -> ScorerChoice:
    """Load the routing scorer before the first task, and say loudly when it is not the one configured."""
    choice = resolve_scorer()
    if choice.degraded:
        logger.warning("%s", choice.message)
    else:
        logger.info("%s", choice.message)
    return choice
