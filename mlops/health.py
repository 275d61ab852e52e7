"""What routing really runs on, for admins and the dashboard header.

* ``report_scorer_health()`` — a worker records the scorer it loaded (``ScorerHealth``);
* ``routing_status()`` — one line for admins: "NLI model X could not be loaded (reason); routing
  with ensemble", from what the workers reported and a cheap local probe.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from mlops.inference.registry import ScorerChoice
from mlops.models import ModelVersion, ScorerHealth

STATUS_CACHE_SECONDS = 30.0
HEALTH_MAX_AGE = timedelta(days=1)


def requested_model_ref(requested: str) -> str:
    if requested in ("auto", "nli"):
        return settings.TRIAGE_NLI_MODEL or ""
    return requested


def report_scorer_health(choice: ScorerChoice, version: ModelVersion | None = None) -> ScorerHealth:
    """Record what this worker loaded, for the admin and the dashboard."""
    requested = choice.requested
    row, _ = ScorerHealth.objects.update_or_create(
        host=socket.gethostname()[:200],
        requested=requested,
        model_ref=requested_model_ref(requested)[:500],
        defaults={
            "active_scorer": choice.scorer.name,
            "active_version": version,
            "ok": not choice.degraded,
            "message": choice.message if choice.degraded else "",
        },
    )
    _status_cache.clear()
    return row


@dataclass(frozen=True)
class RoutingStatus:
    """What routing runs on, for a status line. Falsy when it runs as configured, so
    ``{% if status %}{{ status }}{% endif %}`` shows only problems."""

    requested: str
    model_ref: str
    ok: bool
    message: str
    active_scorer: str = ""
    reported_at: datetime | None = None
    source: str = "probe"  # "worker" when a worker reported it, "probe" when judged locally
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def __bool__(self) -> bool:
        return not self.ok


_status_cache: dict[str, tuple[float, RoutingStatus]] = {}


def routing_status() -> RoutingStatus:
    """Whether routing uses the configured scorer, and if not, why and what it uses instead.

    Cheap enough for every page: one query (cached for 30 s per process) and a file-system probe.
    """
    requested = settings.TRIAGE_ROUTING_SCORER or "auto"
    model_ref = requested_model_ref(requested)
    key = f"{requested}|{model_ref}"
    cached = _status_cache.get(key)
    if cached and time.monotonic() - cached[0] < STATUS_CACHE_SECONDS:
        return cached[1]
    status = _compute_status(requested, model_ref)
    _status_cache[key] = (time.monotonic(), status)
    return status


def _compute_status(requested: str, model_ref: str) -> RoutingStatus:
    recent = ScorerHealth.objects.filter(
        requested=requested, model_ref=model_ref[:500], reported_at__gte=timezone.now() - HEALTH_MAX_AGE
    )
    failing = recent.filter(ok=False).first()
    if failing is not None:
        return RoutingStatus(
            requested, model_ref, False, failing.message, failing.active_scorer, failing.reported_at, "worker"
        )
    healthy = recent.filter(ok=True).first()
    if healthy is not None:
        return RoutingStatus(
            requested,
            model_ref,
            True,
            f"routing with {healthy.active_scorer}",
            healthy.active_scorer,
            healthy.reported_at,
            "worker",
        )
    from mlops.inference.availability import best_offline_scorer, nli_problem

    problem = nli_problem()
    if problem:
        fallback = best_offline_scorer() or "no scorer"
        return RoutingStatus(requested, model_ref, False, f"{problem}; routing with {fallback}", fallback)
    active = "nli" if requested == "auto" else requested
    return RoutingStatus(requested, model_ref, True, f"routing with {active}", active)
