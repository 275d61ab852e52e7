"""Per-process set-up of Celery workers: load the models once, before the first task."""

from __future__ import annotations

import logging

from celery.signals import task_postrun, worker_init, worker_process_init

logger = logging.getLogger(__name__)


@worker_init.connect
def refuse_a_device_it_does_not_have(**_kwargs) -> None:
    """A worker asked to infer on CUDA without a CUDA build or GPU stops at start, saying why, instead
    of failing (or silently crawling on the CPU) at its first task. Celery logs and swallows exceptions
    from signal handlers; SystemExit is not one of them, so the worker exits."""
    from mlops.inference.availability import inference_device_problem

    problem = inference_device_problem()
    if problem:
        logger.critical("refusing to start: %s", problem)
        raise SystemExit(f"refusing to start: {problem}")


def consumes_inference() -> bool:
    """Whether this worker takes tasks from the ``inference`` queue (``-Q``; all queues without it).

    Only those processes load the serving models: a training worker's child loads what its run needs
    and gives it back when it exits (``config/workers.py``), and a worker on ``default`` alone needs
    none."""
    from config.celery import app

    return "inference" in app.amqp.queues.consume_from


@worker_process_init.connect
def warm_models(**_kwargs) -> None:
    from django.conf import settings

    if not consumes_inference():
        return
    task_postrun.connect(give_back_freed_heap, weak=False, dispatch_uid="mlops.signals.give_back_freed_heap")
    if not settings.TRIAGE_WARM_MODELS:
        return
    try:
        from mlops.inference.warm import warm_all

        warm_all()
    except Exception:  # a model that cannot load is reported by the scorer that needs it, not here
        logger.exception("warming models failed; they will load on first use")


def give_back_freed_heap(**_kwargs) -> None:
    """After each task of a process that serves the models: a batch's temporaries (tokenizer output,
    activations, scores) are freed, but glibc keeps their pages mapped; measured, the first tag scoring
    of a batch left ~24 MB that ``malloc_trim`` returned (``bench/bench_worker_memory.py``)."""
    from mlops.inference.warm import trim_heap

    trim_heap()
