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


# A batch must end well inside its task's time limit (TRIAGE_INFERENCE_TIME_LIMIT, which kills the pool
# process): it is sized to take at most this share of it, from what batches of the kind cost so far.
BATCH_TIME_SHARE = 0.2
# Until a process has timed a batch of a kind, it claims at most this many (a slow, busy CPU routes a
# ticket with the ensemble in seconds: 32 of them could outlast the time limit).
FIRST_BATCH = 8


class BatchPacer:
    """How many tickets the next batch of a kind may hold so that it ends in time; one per process.

    >>> pacer = BatchPacer(budget_seconds=60)
    >>> pacer.limit("route", 32)
    8
    >>> pacer.record("route", tickets=8, seconds=20.0)
    >>> pacer.limit("route", 32)
    24
    """

    def __init__(self, budget_seconds: float) -> None:
        self.budget = budget_seconds
        self.seconds_per_ticket: dict[str, float] = {}

    def limit(self, kind: str, cap: int) -> int:
        cost = self.seconds_per_ticket.get(kind)
        if cost is None:
            return min(cap, FIRST_BATCH)
        return max(1, min(cap, int(self.budget / max(cost, 1e-6))))

    def record(self, kind: str, *, tickets: int, seconds: float) -> None:
        """What a batch of ``tickets`` cost; the estimate follows the latest batches (half weight each)."""
        if tickets < 1:
            return
        cost = seconds / tickets
        previous = self.seconds_per_ticket.get(kind)
        self.seconds_per_ticket[kind] = cost if previous is None else (previous + cost) / 2


_pacer: BatchPacer | None = None


def batch_pacer() -> BatchPacer:
    """This process's pacer, its budget a share of ``TRIAGE_INFERENCE_TIME_LIMIT``."""
    global _pacer
    if _pacer is None:
        from django.conf import settings

        _pacer = BatchPacer(settings.TRIAGE_INFERENCE_TIME_LIMIT * BATCH_TIME_SHARE)
    return _pacer
