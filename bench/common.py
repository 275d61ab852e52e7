"""Shared by the benchmarks: what they record about the machine (CPU model and flags, load, GPU),
percentiles, and writing a results file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

SHARED_NOTE = (
    "other sessions may run on this machine at the same time (see the load average); "
    "ratios come from runs interleaved or back to back"
)


def cpu_description() -> dict:
    """The CPU model and the flags that decide the arithmetic (AVX2, AVX-512, AMX, VNNI, bfloat16)."""
    from mlops.inference.encoders import cpu_computes_bfloat16

    model, flags = "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.M).group(1).strip()
        flags = set(re.search(r"^flags\s*:\s*(.+)$", text, re.M).group(1).split())
    except (OSError, AttributeError):
        pass
    wanted = sorted(f for f in flags if re.match(r"(avx|amx|fma|f16c|sse4|vnni)", f))
    return {"model": model, "flags": wanted, "computes_bfloat16": cpu_computes_bfloat16(), "cpus": os.cpu_count()}


def gpu_description() -> str:
    """Whether a GPU was there; these benchmarks run on the CPU unless they say otherwise."""
    try:
        import torch
    except ImportError:
        return "none (torch not installed); not run on a GPU"
    if torch.cuda.is_available():
        return f"available: {torch.cuda.get_device_name(0)}"
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    return f"none (torch {torch.__version__}, {build}); not run on a GPU: no GPU was lent to this run"


def machine(load_before: tuple[float, float, float]) -> dict:
    """The machine block of a results JSON; ``load_before`` is ``os.getloadavg()`` taken at the start."""
    return {
        "cpu": cpu_description(),
        "gpu": gpu_description(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "note": SHARED_NOTE,
    }


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_result(path: str | Path, result: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
