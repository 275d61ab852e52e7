"""A CUDA inference device is refused, with the reason, where the torch build or the machine has none."""

from __future__ import annotations

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from mlops.inference.availability import check_inference_device, inference_device_problem
from tests.workers import celery_worker

HAS_GPU = torch.cuda.is_available()
WHY = "is a build without CUDA" if not torch.version.cuda else "sees no GPU"

pytestmark = pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: cuda is a valid device here")


def test_cpu_and_auto_are_always_accepted():
    assert inference_device_problem("cpu") == ""
    assert inference_device_problem("auto") == ""


def test_the_system_check_refuses_cuda_without_a_cuda_build_or_gpu_and_says_what_to_do(settings):
    settings.TRIAGE_INFERENCE_DEVICE = "cuda"
    [error] = check_inference_device()
    assert error.id == "mlops.E002"
    assert WHY in error.msg and "TRIAGE_INFERENCE_DEVICE=cpu or auto" in error.msg
    with pytest.raises(SystemCheckError, match="TRIAGE_INFERENCE_DEVICE=cuda"):
        call_command("check")


def test_a_numbered_cuda_device_is_refused_too(settings):
    settings.TRIAGE_INFERENCE_DEVICE = "cuda:1"
    [error] = check_inference_device()
    assert "TRIAGE_INFERENCE_DEVICE=cuda:1" in error.msg


@pytest.mark.django_db(transaction=True)
def test_a_worker_asked_for_cuda_refuses_to_start_and_says_why():
    with pytest.raises(RuntimeError, match="celery worker exited with 1") as exited:
        with celery_worker(queues="inference", extra_env={"TRIAGE_INFERENCE_DEVICE": "cuda"}):
            pass
    assert "refusing to start: TRIAGE_INFERENCE_DEVICE=cuda" in str(exited.value)
    assert WHY in str(exited.value)
