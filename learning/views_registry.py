"""The model registry page (``/models/``): versions, retraining, self-training and tag-set training with live
progress, rollback.

Admins only (``admin_required``: 403 for agents, the login page for anonymous visitors). Reads
``ModelVersion`` and ``TrainingRun`` rows; writes only through ``learning.trigger.request_training``,
``learning.selftrain.request_self_training``, ``learning.tag_retraining.request_tag_training`` and
``mlops.registry.promote_version`` (rollback). Every run records who asked for it (``triggered_by``).
The progress panel is polled by htmx every two seconds while a run is queued or running and asks for
a page refresh when the run ends.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from mlops.models import ROUTING_TASK, ModelVersion, TrainingRun, tag_task
from mlops.registry import SERVABLE, promote_version
from tags.models import TagSet
from triage.models import Team
from triage.roles import admin_required

from .selftrain import check_selftrain_trigger, request_self_training
from .tag_retraining import TagTrainingRefused, check_tag_labels, request_tag_training
from .trigger import TrainingInProgress, active_run, check_trigger, request_training

ACTIVE = (TrainingRun.State.QUEUED, TrainingRun.State.RUNNING)
SHOWN_VERSIONS = 100


@require_GET
@admin_required
def registry(request: HttpRequest) -> HttpResponse:
    versions = list(
        ModelVersion.objects.select_related("triggered_by", "training_run").order_by("-created_at", "-pk")[
            :SHOWN_VERSIONS
        ]
    )
    for version in versions:
        version.can_rollback = version.status in SERVABLE
        version.label_total = sum((version.label_counts or {}).values())
    context = {
        "versions": versions,
        "champion": ModelVersion.objects.champion(),
        "run": active_run(),
        "trigger": check_trigger(),
        "settings": {
            "min_labels_per_team": settings.TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM,
            "min_new_labels": settings.TRIAGE_RETRAIN_MIN_NEW_LABELS,
            "margin": settings.TRIAGE_PROMOTION_MARGIN,
            "holdout": settings.TRIAGE_RETRAIN_HOLDOUT,
            "selftrain_every": settings.TRIAGE_SELFTRAIN_EVERY,
            "selftrain_window": settings.TRIAGE_SELFTRAIN_WINDOW,
            "selftrain_min_per_team": settings.TRIAGE_SELFTRAIN_MIN_TICKETS_PER_TEAM,
            "selftrain_min_agreement": settings.TRIAGE_SELFTRAIN_MIN_AGREEMENT,
            "selftrain_max_volume_loss": settings.TRIAGE_SELFTRAIN_MAX_VOLUME_LOSS,
        },
        "selftrain": check_selftrain_trigger(),
        "teams": Team.objects.filter(active=True).order_by("name"),
        "tag_sets": _trainable_tag_sets(),
    }
    return render(request, "learning/registry.html", context)


def _trainable_tag_sets() -> list[dict]:
    """Each active zero-shot tag set with its label counts per tag, whether it can be trained, its champion."""
    rows = []
    for tag_set in TagSet.objects.filter(active=True, method=TagSet.Method.ZERO_SHOT).order_by("name"):
        check = check_tag_labels(tag_set)
        champion = ModelVersion.objects.champion(task=tag_task(tag_set.slug))
        rows.append({"tag_set": tag_set, "check": check, "champion": champion})
    return rows


@require_POST
@admin_required
def retrain(request: HttpRequest) -> HttpResponse:
    try:
        version = request_training(trigger="manual", user=request.user)
    except TrainingInProgress as exc:
        messages.error(request, f"Not queued: {exc}.")
    except ImproperlyConfigured as exc:
        messages.error(request, f"Not queued, the training settings are wrong: {exc}")
    else:
        messages.success(request, f"Training {version.version} queued.")
    return redirect("learning:models")


@require_POST
@admin_required
def self_train(request: HttpRequest) -> HttpResponse:
    """Queue a self-trained build; the run row is stored first, so a broker outage only delays it."""
    try:
        version = request_self_training(trigger="manual", user=request.user)
    except TrainingInProgress as exc:
        messages.error(request, f"Not queued: {exc}.")
    else:
        messages.success(request, f"Self-trained build {version.version} queued.")
    return redirect("learning:models")


@require_POST
@admin_required
def train_tags(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue one tag set's SetFit head on the training queue ("Train tags"), as "Retrain now" queues routing's."""
    tag_set = get_object_or_404(TagSet, slug=slug)
    try:
        version = request_tag_training(tag_set, trigger="manual", user=request.user)
    except (TrainingInProgress, TagTrainingRefused) as exc:
        messages.error(request, f"Not queued: {exc}.")
    else:
        messages.success(request, f"Tag training {version.version} for {tag_set.name} queued.")
    return redirect(f"{reverse('learning:models')}#tag-training")


@require_GET
@admin_required
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The live progress panel of one run (polled while it is queued or running)."""
    run = get_object_or_404(TrainingRun.objects.select_related("model_version"), pk=pk)
    response = render(request, "learning/registry_run.html", {"run": run, "active": run.state in ACTIVE})
    if request.GET.get("was") == "active" and run.state not in ACTIVE and request.htmx:
        response["HX-Refresh"] = "true"  # the versions table changed: reload the page once
    return response


@require_GET
@admin_required
def version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("triggered_by"), pk=pk)
    run = TrainingRun.objects.filter(model_version=version).first()
    metrics = version.metrics or {}
    challenger, champion = metrics.get("challenger") or {}, metrics.get("champion") or {}
    teams = sorted(set(challenger.get("f1_per_team", {})) | set(version.label_counts or {}))
    rows = [
        {
            "team": slug,
            "labels": (version.label_counts or {}).get(slug, 0),
            "trained": slug in (metrics.get("split") or {}).get("trained_teams", []),
            "f1": challenger.get("f1_per_team", {}).get(slug),
            "champion_f1": champion.get("f1_per_team", {}).get(slug),
            "threshold": (version.thresholds or {}).get(slug),
            "threshold_note": (metrics.get("thresholds") or {}).get(slug, ""),
        }
        for slug in teams
    ]
    tag_rows = []
    if version.task != ROUTING_TASK:  # a tag set's head: its tags instead of teams
        tags = sorted(set(challenger.get("f1_per_tag", {})) | set(version.label_counts or {}))
        rows = []
        tag_rows = [
            {
                "tag": slug,
                "labels": (version.label_counts or {}).get(slug, 0),
                "f1": challenger.get("f1_per_tag", {}).get(slug),
                "champion_f1": champion.get("f1_per_tag", {}).get(slug),
                "champion_threshold": (champion.get("thresholds") or {}).get(slug),
            }
            for slug in tags
        ]
    context = {
        "version": version,
        "run": run,
        "metrics": metrics,
        "rows": rows,
        "tag_rows": tag_rows,
        "can_rollback": version.status in SERVABLE,
    }
    return render(request, "learning/registry_version.html", context)


@require_POST
@admin_required
def rollback(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, pk=pk)
    try:
        promote_version(version, user=request.user, reason=f"rollback by {request.user}")
    except ValidationError as exc:
        messages.error(request, f"Cannot roll back: {' '.join(exc.messages)}")
    else:
        messages.success(request, f"{version.version} is the champion again; new tickets are routed by it.")
    return redirect("learning:models")
