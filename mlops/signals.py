"""Per-process set-up of Celery workers: load the models once, before the first task."""

from __future__ import annotations

import logging

from celery.signals import worker_process_init

logger = logging.getLogger(__name__)


@worker_process_init.connect
def warm_models(**_kwargs) -> None:
    from django.conf import settings

    if not settings.TRIAGE_WARM_MODELS:
        return
    try:
        from mlops.inference.warm import warm_all

        warm_all()
    except Exception:  # a model that cannot load is reported by the scorer that needs it, not here
        logger.exception("warming models failed; they will load on first use")
