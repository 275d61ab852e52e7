"""Cheap answers to "can this model load here?", without loading it (no torch, no transformers).

Used by the start-up system check and the routing status line that web pages show; the worker, which
really loads the models, reports what it found in ``mlops.ScorerHealth``.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core import checks

from .encoders import ModelUnavailable, resolve_model_ref


def probe_model(ref: str) -> tuple[bool, str]:
    """``(True, "")`` when ``ref`` is a local model or in the Hugging Face cache (or can be fetched),
    else ``(False, reason)``."""
    try:
        path = resolve_model_ref(ref)
    except ModelUnavailable as exc:
        return False, str(exc)
    except ImportError as exc:
        return False, f"its package is not installed ({exc})"
    local = Path(path).expanduser()
    if local.exists():
        if local.is_dir() and not any(
            (local / name).exists() for name in ("config.json", "model.onnx", "modules.json")
        ):
            return False, f"{local} has no config.json"
        return True, ""
    if path.startswith((".", "/", "~")) or os.sep in path.strip("/").replace("/", "", 1):
        return False, f"no such directory {path}"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json")
    except Exception:  # a malformed repo id: say so below
        cached = None
    if isinstance(cached, str):
        return True, ""
    if settings.TRIAGE_MODELS_OFFLINE:
        reason = settings.TRIAGE_HUB_REASON
        return False, f"not a local directory and not in the Hugging Face cache, and the hub is off ({reason})"
    return True, "not cached yet; it will be downloaded on first use"


def best_offline_scorer() -> str | None:
    """The scorer routing falls back to, judged from which packaged models are on disk."""
    embedder_ok, _ = probe_model(settings.TRIAGE_EMBEDDER_MODEL)
    reranker_ok, _ = probe_model(settings.TRIAGE_RERANKER_MODEL)
    if embedder_ok and reranker_ok:
        return "ensemble"
    if embedder_ok:
        return "embedding"
    if reranker_ok:
        return "cross-encoder"
    return None


def nli_problem() -> str:
    """Why the configured NLI model cannot load here ("" when it looks loadable or is not wanted)."""
    if (settings.TRIAGE_ROUTING_SCORER or "auto") not in ("auto", "nli"):
        return ""
    ok, reason = probe_model(settings.TRIAGE_NLI_MODEL)
    if ok:
        return ""
    return f"NLI model {settings.TRIAGE_NLI_MODEL!r} could not be loaded ({reason})"


@checks.register("models")
def check_routing_models(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Start-up warning when the configured routing model cannot load; routing then says what it uses."""
    problem = nli_problem()
    if not problem:
        return []
    fallback = best_offline_scorer()
    if fallback is None:
        return [
            checks.Error(
                f"{problem}; no offline scorer can load either, so tickets cannot be routed",
                hint="Install the packaged models (requirements-nodeps.txt) or set TRIAGE_NLI_MODEL to a local path.",
                id="mlops.E001",
            )
        ]
    return [
        checks.Warning(
            f"{problem}; routing with {fallback}",
            hint="Set TRIAGE_NLI_MODEL to a local directory, or allow downloads from the Hugging Face hub, "
            "or set TRIAGE_ROUTING_SCORER to an offline scorer (ensemble, embedding, cross-encoder).",
            id="mlops.W001",
        )
    ]
