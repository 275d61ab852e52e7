"""What a worker process loads before its first task."""

from __future__ import annotations

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
