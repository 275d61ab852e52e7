"""A process that serves the models gives the heap its tasks freed back to the system after each task."""

from __future__ import annotations

from celery.signals import task_postrun

from mlops.signals import consumes_inference, give_back_freed_heap, warm_models


def connected() -> bool:
    return any(receiver is give_back_freed_heap for _, receiver in task_postrun.receivers)


def test_a_process_consuming_inference_trims_its_heap_after_each_task(settings):
    settings.TRIAGE_WARM_MODELS = False  # the hook does not depend on warming
    assert consumes_inference()  # no -Q here: every queue
    try:
        warm_models()
        assert connected()
        give_back_freed_heap(task=None)  # malloc_trim where glibc is, a no-op elsewhere; never raises
    finally:
        task_postrun.disconnect(dispatch_uid="mlops.signals.give_back_freed_heap")
    assert not connected()
