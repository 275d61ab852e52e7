"""Per-process set-up of Celery workers: load the models once, before the first task."""

from __future__ import annotations

import logging
import os

from celery.signals import worker_process_init

logger = logging.getLogger(__name__)


@worker_process_init.connect
def warm_models(**_kwargs) -> None:
    if os.environ.get("TRIAGE_WARM_MODELS", "1") in ("0", "false", "no"):
        return
    try:
        from mlops.inference.warm import warm_all

        warm_all()
    except Exception:  # a model that cannot load is reported by the scorer that needs it, not here
        logger.exception("warming models failed; they will load on first use")
