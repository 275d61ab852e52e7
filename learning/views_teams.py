"""The team page (admins): the description and example tickets the router reads, a preview of what an
edit would route, and warnings about teams the router cannot tell apart.

Saving writes through ``triage.team_services.describe_team`` (audited; a new zero-shot version
follows). The preview needs the models, so it runs on an inference worker
(``preview_team_description_task``) and the page polls its progress.
"""

from __future__ import annotations

from celery.result import AsyncResult
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from triage.models import Team, TeamChange
from triage.roles import admin_required
from triage.team_services import EXAMPLES_MAX, clean_description, clean_examples, describe_team

from .descriptions import PREVIEW_TICKETS, confused_pairs

TEXT_FIELDS = ("description", "examples")


def _examples(raw: str) -> list[str]:
    """One example ticket per line in the form."""
    return [line for line in raw.splitlines() if line.strip()]


def _context(team: Team, *, description: str, examples: str, errors: dict | None = None) -> dict:
    return {
        "team": team,
        "description": description,
        "examples": examples,
        "examples_max": EXAMPLES_MAX,
        "preview_tickets": PREVIEW_TICKETS,
        "errors": errors or {},
        "confused": confused_pairs(only=team.slug),
        "changes": TeamChange.objects.filter(team=team, field__in=TEXT_FIELDS).select_related("user")[:10],
    }


@require_http_methods(["GET", "POST"])
@admin_required
def team_page(request: HttpRequest, slug: str) -> HttpResponse:
    team = get_object_or_404(Team, slug=slug)
    if request.method == "GET":
        return render(
            request,
            "learning/team.html",
            _context(team, description=team.description, examples="\n".join(team.examples or [])),
        )
    description = request.POST.get("description", "")
    examples = request.POST.get("examples", "")
    try:
        changes = describe_team(
            team,
            description=description,
            examples=_examples(examples),
            user=request.user,
            reason=request.POST.get("reason", ""),
        )
    except ValidationError as exc:
        errors = exc.message_dict
        messages.error(request, f"{team.name}: not saved. " + " ".join(e for errs in errors.values() for e in errs))
        return render(
            request,
            "learning/team.html",
            _context(team, description=description, examples=examples, errors=errors),
            status=400,
        )
    if changes:
        messages.success(
            request,
            f"{team.name}: {' and '.join(c.field for c in changes)} saved. A new zero-shot model version "
            "is being made from it; the next ticket routed uses it (unless a trained model is the champion).",
        )
    else:
        messages.info(request, f"{team.name}: nothing changed.")
    return HttpResponseRedirect(reverse("learning:team", kwargs={"slug": team.slug}))


@require_POST
@admin_required
def start_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue the preview of the edited (unsaved) texts; answers the fragment that polls for it."""
    from .tasks import preview_team_description_task

    team = get_object_or_404(Team, slug=slug)
    try:
        description = clean_description(request.POST.get("description", ""))
        examples = clean_examples(_examples(request.POST.get("examples", "")))
    except ValidationError as exc:
        errors = [e for errs in exc.message_dict.values() for e in errs]
        return render(request, "learning/_team_preview.html", {"team": team, "errors": errors}, status=400)
    result = preview_team_description_task.delay(team.pk, description, examples)
    return render(request, "learning/_team_preview.html", {"team": team, "task_id": result.id, "state": "PENDING"})


@require_GET
@admin_required
def preview_result(request: HttpRequest, slug: str, task_id: str) -> HttpResponse:
    team = get_object_or_404(Team, slug=slug)
    result = AsyncResult(task_id)
    context: dict = {"team": team, "task_id": task_id, "state": result.state}
    if result.state == "PROGRESS" and isinstance(result.info, dict):
        context["progress"] = result.info
    elif result.state == "SUCCESS":
        preview = result.result
        if not isinstance(preview, dict) or preview.get("team") != team.slug:
            return render(
                request, "learning/_team_preview.html", {"team": team, "errors": ["no such preview"]}, status=404
            )
        context["preview"] = preview
    elif result.state == "FAILURE":
        context["errors"] = [f"the preview failed: {result.info}"]
    return render(request, "learning/_team_preview.html", context)
