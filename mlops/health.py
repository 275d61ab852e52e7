"""What routing really runs on, for admins and the dashboard header.

* ``report_scorer_health()`` — a worker records the scorer it loaded (``ScorerHealth``);
* ``routing_status()`` — what routes now, from the champion, what the workers reported and a cheap
  local probe: a short line for agents ("Routing with the offline ensemble") and, for admins, the
  details ("NLI model X could not be loaded (reason); routing with ensemble") and what to do.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from mlops.inference.registry import ZERO_SHOT_SCORERS, ScorerChoice
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


# How agents read what routes: a scorer's name, without the model's internals.
_SCORER_WORDS = {
    "ensemble": "the offline ensemble",
    "embedding": "the offline embedding model",
    "cross-encoder": "the offline cross-encoder",
    "nli": "the NLI model",
}
NO_SCORER = "no scorer"


def agent_line(active_scorer: str, version: ModelVersion | None = None) -> str:
    """The status line agents see, from the version that serves (else the scorer that loaded).

    >>> agent_line("ensemble")
    'Routing with the offline ensemble'
    """
    if version is not None and version.scorer == "self-trained":  # learnt from tickets, not from labels
        return f"Routing with the self-trained model {version.version}"
    if version is not None and version.scorer not in ZERO_SHOT_SCORERS:
        return f"Routing with the trained model {version.version}"
    scorer = version.scorer if version is not None else active_scorer
    if not scorer or scorer == NO_SCORER:
        return "Automatic routing is unavailable: new tickets wait for a person"
    return f"Routing with {_SCORER_WORDS.get(scorer, scorer)}"


@dataclass(frozen=True)
class RoutingStatus:
    """What routing runs on. Falsy when it runs as configured, so ``{% if status %}`` shows only problems.

    ``summary`` is the one line agents see; ``message`` (also ``str()``), ``model_ref`` and ``hint`` are
    the details for admins.
    """

    requested: str
    model_ref: str
    ok: bool
    message: str
    active_scorer: str = ""
    reported_at: datetime | None = None
    source: str = "probe"  # "worker" when a worker reported it, "probe" when judged locally
    details: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    hint: str = ""

    def __str__(self) -> str:
        return self.message

    def __bool__(self) -> bool:
        return not self.ok


_status_cache: dict[str, tuple[float, RoutingStatus]] = {}


def routing_status() -> RoutingStatus:
    """Whether routing uses the configured scorer, and if not, why and what it uses instead.

    Cheap enough for every page: a few queries (cached for 30 s per process) and a file-system probe.
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
    from mlops.inference.availability import best_offline_scorer, nli_problem, routing_hint

    champion = ModelVersion.objects.champion()
    if champion is not None and champion.scorer not in ZERO_SHOT_SCORERS and champion.files_present():
        # A trained champion routes whatever the zero-shot setting can load (mlops.registry.serving_version).
        line = agent_line(champion.scorer, champion)
        return RoutingStatus(requested, model_ref, True, line.lower(), champion.scorer, summary=line)
    hint = routing_hint(requested)
    recent = ScorerHealth.objects.filter(
        requested=requested, model_ref=model_ref[:500], reported_at__gte=timezone.now() - HEALTH_MAX_AGE
    ).select_related("active_version")
    failing = recent.filter(ok=False).first()
    if failing is not None:
        return RoutingStatus(
            requested,
            model_ref,
            False,
            failing.message,
            failing.active_scorer,
            failing.reported_at,
            "worker",
            summary=agent_line(failing.active_scorer, failing.active_version),
            hint=hint,
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
            summary=agent_line(healthy.active_scorer, healthy.active_version),
        )
    problem = nli_problem()
    if problem:
        fallback = best_offline_scorer() or NO_SCORER
        return RoutingStatus(
            requested,
            model_ref,
            False,
            f"{problem}; routing with {fallback}",
            fallback,
            summary=agent_line(fallback),
            hint=hint,
        )
    active = "nli" if requested == "auto" else requested
    return RoutingStatus(requested, model_ref, True, f"routing with {active}", active, summary=agent_line(active))
