"""How many tickets one inference task scores together (micro-batching, ``triage.work.claim_jobs``).

On a CPU most of a lone ticket's time is per-task overhead (the message, the claim, the serving
version, the fusion policy, a forward pass on one short sequence); 32 tickets share it and fill the
length-sorted padded batches the scorers build. A GPU is idle between small launches, so it takes
more per pass. ``TRIAGE_INFERENCE_BATCH_SIZE`` overrides the choice; 1 is the per-ticket path.
"""

from __future__ import annotations

CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 128


def default_batch_size(device: str) -> int:
    """The batch size for ``device`` (``cpu``, ``cuda``, ``cuda:1`` ...).

    >>> default_batch_size("cuda:0"), default_batch_size("cpu")
    (128, 32)
    """
    return GPU_BATCH_SIZE if device.startswith("cuda") else CPU_BATCH_SIZE


def inference_batch_size() -> int:
    """Tickets one routing or suggestion task claims: ``TRIAGE_INFERENCE_BATCH_SIZE``, or by device when 0."""
    from django.conf import settings

    if settings.TRIAGE_INFERENCE_BATCH_SIZE:
        return settings.TRIAGE_INFERENCE_BATCH_SIZE
    from .encoders import resolve_device

    return default_batch_size(resolve_device())
