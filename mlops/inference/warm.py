"""What a worker process loads before its first task."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

logger = logging.getLogger(__name__)

# Other modules append loaders here (routing scorers, SetFit champion) at import time.
WARMERS: list = []


def warm_all() -> None:
    from .encoders import get_cross_encoder, get_embedder

    for loader in [get_embedder, get_cross_encoder, *WARMERS]:
        try:
            loader()
        except Exception as exc:
            logger.warning("could not warm %s: %s", getattr(loader, "__name__", loader), exc)
    release_freed_memory()


def release_freed_memory() -> None:
    """Give the heap freed while loading back to the system.

    Loading leaves large temporaries behind (the cross-encoder's ONNX graph is parsed, rewritten and
    serialized before onnxruntime takes it), and glibc keeps freed heap pages mapped: measured, ~90 MB
    of the inference process's resident memory was such pages until ``malloc_trim``. No-op elsewhere.
    """
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """``malloc_trim``: the freed heap pages glibc still holds go back to the system (~2 ms on the
    inference process; no garbage collection, which takes ~1 s there). No-op outside glibc."""
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to release this way
        pass
