"""Admin pages for routing thresholds (tuning, with a live what-if) and model-quality reports.

Every view here is for admins only (``admin_required``: 403 for agents, the login page for
anonymous visitors). Views parse input with ``learning.forms``, read with ``learning.reports`` (tags:
``learning.tag_tuning``), compute with ``learning.tuning``, draw with ``learning.plots`` and write only
through ``triage.team_services`` and ``tags.services``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from tags.models import Tag
from tags.services import set_tag_threshold
from triage.models import Team, TeamChange
from triage.roles import admin_required
from triage.team_services import set_routing_for_teams, set_team_routing

from . import plots, quality, tag_page, tuning
from .forms import (
    ReportForm,
    TagThresholdForm,
    TagWhatIfForm,
    TargetPrecisionForm,
    TeamRoutingForm,
    WhatIfForm,
    WindowForm,
)
from .reports import REPORT_COLUMNS, load_outcomes, quality_report
from .tag_tuning import load_tag_outcomes
from .what_if_context import AUDIT_ROWS, class_what_if_context, wants_json


def _active_teams() -> list[Team]:
    return list(Team.objects.filter(active=True).order_by("name"))


def _window_query(n: int, version) -> str:
    query = QueryDict(mutable=True)
    query["n"] = str(n)
    if version is not None:
        query["version"] = str(version.pk)
    return query.urlencode()


def _tuning_url(team: Team | None, n: int, version) -> str:
    query = QueryDict(_window_query(n, version), mutable=True)
    if team is not None:
        query["team"] = team.slug
    return f"{reverse('learning:tuning')}?{query.urlencode()}"


def _what_if_context(outcomes: tuning.Outcomes, team: Team, threshold: float, mode: str) -> dict:
    """Numbers and curve for ``team`` at a tried ``threshold`` and ``mode``, beside the saved ones."""
    context = class_what_if_context(outcomes.for_class(team.slug), (team.threshold, team.mode), (threshold, mode))
    return {"team": team, **context}


def _suggestions(outcomes: tuning.Outcomes, teams: list[Team], target: float, min_support: int) -> list[dict]:
    return [{"team": team, "s": tuning.suggest_threshold(outcomes, team.slug, target, min_support)} for team in teams]


def _page_context(
    query: QueryDict,
    *,
    team: Team | None = None,
    routing_form: TeamRoutingForm | None = None,
    suggest_form: TargetPrecisionForm | None = None,
    tag: Tag | None = None,
    tag_form: TagThresholdForm | None = None,
) -> dict:
    window_form = WindowForm.from_query(query)
    n, version = window_form.window()
    outcomes = load_outcomes(last_n=n, model_version=version)
    teams = _active_teams()
    if team is None:
        slug = query.get("team")
        team = next((t for t in teams if t.slug == slug), teams[0] if teams else None)
    summaries = [{"team": t, "w": tuning.what_if(outcomes, t.slug, t.threshold, t.mode)} for t in teams]
    context: dict = {
        "window_form": window_form,
        "window_query": _window_query(n, version),
        "n": n,
        "version": version,
        "outcomes": outcomes,
        "labeled": int(outcomes.labeled.sum()),
        "teams": teams,
        "summaries": summaries,
        "selected": team,
        "audit": TeamChange.objects.select_related("team", "user")[:AUDIT_ROWS],
        "suggest_form": suggest_form
        or TargetPrecisionForm(
            initial={"target": settings.TRIAGE_TARGET_PRECISION, "n": n, "version": version},
        ),
        "suggestions": None,
    }
    if suggest_form is not None and suggest_form.is_valid():
        chosen = suggest_form.cleaned_data["team"]
        context["suggestions"] = _suggestions(
            outcomes,
            [chosen] if chosen else teams,
            suggest_form.cleaned_data["target"],
            suggest_form.cleaned_data["min_support"],
        )
    if team is not None:
        form = routing_form or TeamRoutingForm(initial={"mode": team.mode, "threshold": team.threshold})
        tried_threshold, tried_mode = team.threshold, team.mode
        if routing_form is not None and routing_form.is_bound:
            # Re-show what the admin tried when the values parse, even if the save was refused.
            tried_threshold = routing_form.cleaned_data.get("threshold", team.threshold)
            tried_mode = routing_form.cleaned_data.get("mode", team.mode)
        team_rel = quality.team_reliability(outcomes, team.slug)
        context.update(
            {
                "routing_form": form,
                "what_if": _what_if_context(outcomes, team, tried_threshold, tried_mode),
                "team_reliability": team_rel,
                "team_reliability_svg": plots.reliability_svg(team_rel, f"team {team.slug}"),
            }
        )
    target = suggest_form.cleaned_data["target"] if suggest_form is not None and suggest_form.is_valid() else None
    context.update(tag_page.tag_section(query, target=target, selected=tag, form=tag_form))
    overall = quality.overall_reliability(outcomes)
    matrix = quality.confusion(outcomes, [t.slug for t in teams])
    context.update(
        {
            "reliability": overall,
            "reliability_svg": plots.reliability_svg(overall, "overall"),
            "confusion": matrix,
            "confusion_rows": list(zip(matrix.classes, matrix.matrix, strict=True)),
            "confusion_svg": plots.confusion_svg(matrix),
        }
    )
    return context


@require_GET
@admin_required
def tuning_page(request: HttpRequest) -> HttpResponse:
    suggest_form = TargetPrecisionForm(request.GET) if "target" in request.GET else None
    return render(request, "learning/tuning.html", _page_context(request.GET, suggest_form=suggest_form))


@require_GET
@admin_required
def what_if(request: HttpRequest) -> HttpResponse:
    """What a threshold (and mode) would have done for a team on recorded predictions.

    HTML fragment for the page's slider (htmx), JSON with ``?format=json``; 400 with the reasons
    on bad input.
    """
    form = WhatIfForm(request.GET)
    if not form.is_valid():
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        if wants_json(request):
            return JsonResponse({"errors": errors}, status=400)
        return render(request, "learning/_what_if_error.html", {"errors": errors}, status=400)
    team = form.cleaned_data["team"]
    threshold = form.cleaned_data["threshold"]
    mode = form.cleaned_data["mode"] or team.mode
    n, version = form.window()
    outcomes = load_outcomes(last_n=n, model_version=version)
    if wants_json(request):
        return JsonResponse(
            {
                "what_if": tuning.what_if(outcomes, team.slug, threshold, mode).as_dict(),
                "saved": tuning.what_if(outcomes, team.slug, team.threshold, team.mode).as_dict(),
                "window": {"n": n, "version": version.pk if version else None, "tickets": len(outcomes)},
            }
        )
    return render(request, "learning/_what_if.html", _what_if_context(outcomes, team, threshold, mode))


@require_POST
@admin_required
def save_team_routing(request: HttpRequest, slug: str) -> HttpResponse:
    team = get_object_or_404(Team, slug=slug)
    form = TeamRoutingForm(request.POST)
    if form.is_valid():
        before = (team.mode, team.threshold)
        try:
            changes = set_team_routing(
                team,
                mode=form.cleaned_data["mode"],
                threshold=form.cleaned_data["threshold"],
                user=request.user,
                reason=form.cleaned_data["reason"],
            )
        except ValidationError as exc:
            for field, errs in exc.message_dict.items():
                for err in errs:
                    form.add_error(field if field in form.fields else None, err)
        else:
            if changes:
                said = "; ".join(f"{c.field} {c.before} → {c.after}" for c in changes)
                messages.success(request, f"{team.name}: {said}. The next ticket routed uses it.")
            else:
                messages.info(request, f"{team.name}: nothing changed (mode {before[0]}, threshold {before[1]}).")
            window = WindowForm.from_query(request.POST)
            n, version = window.window()
            return HttpResponseRedirect(_tuning_url(team, n, version))
    messages.error(request, f"{team.name}: not saved. " + " ".join(e for errs in form.errors.values() for e in errs))
    # The window the admin was looking at travels in the form's hidden fields.
    context = _page_context(request.POST, team=team, routing_form=form)
    return render(request, "learning/tuning.html", context, status=400)


@require_GET
@admin_required
def suggest_thresholds(request: HttpRequest) -> HttpResponse:
    """Thresholds reaching a target precision, for one team or every active team."""
    form = TargetPrecisionForm(request.GET)
    if not form.is_valid():
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        if wants_json(request):
            return JsonResponse({"errors": errors}, status=400)
        if request.htmx:
            return render(request, "learning/_suggestions.html", {"errors": errors, "suggestions": None}, status=400)
        return render(request, "learning/tuning.html", _page_context(request.GET, suggest_form=form), status=400)
    n, version = form.window()
    outcomes = load_outcomes(last_n=n, model_version=version)
    chosen = form.cleaned_data["team"]
    rows = _suggestions(
        outcomes, [chosen] if chosen else _active_teams(), form.cleaned_data["target"], form.cleaned_data["min_support"]
    )
    if wants_json(request):
        return JsonResponse(
            {
                "suggestions": [{**r["s"].as_dict(), "current_threshold": r["team"].threshold} for r in rows],
                "window": {"n": n, "version": version.pk if version else None, "tickets": len(outcomes)},
            }
        )
    if request.htmx:
        return render(
            request,
            "learning/_suggestions.html",
            {"suggestions": rows, "window_query": _window_query(n, version), "suggest_form": form},
        )
    return render(request, "learning/tuning.html", _page_context(request.GET, suggest_form=form))


@require_POST
@admin_required
def apply_thresholds(request: HttpRequest) -> HttpResponse:
    """Save the suggested thresholds the admin ticked, all or none."""
    slugs = request.POST.getlist("apply")
    teams = {t.slug: t for t in Team.objects.filter(slug__in=slugs)}
    window = WindowForm.from_query(request.POST)
    n, version = window.window()
    back = _tuning_url(None, n, version)
    unknown = sorted(set(slugs) - set(teams))
    if not slugs or unknown:
        messages.error(
            request, "Nothing saved: " + (f"unknown team {unknown[0]!r}." if unknown else "no team was ticked.")
        )
        return HttpResponseRedirect(back)
    wanted = {teams[slug]: {"threshold": request.POST.get(f"threshold_{slug}")} for slug in slugs}
    missing = [slug for slug in slugs if not request.POST.get(f"threshold_{slug}")]
    if missing:
        messages.error(request, f"Nothing saved: no threshold given for {', '.join(missing)}.")
        return HttpResponseRedirect(back)
    try:
        changes = set_routing_for_teams(wanted, user=request.user, reason=request.POST.get("reason", "")[:200])
    except ValidationError as exc:
        said = "; ".join(f"{slug}: {' '.join(errs)}" for slug, errs in exc.message_dict.items())
        messages.error(request, f"Nothing saved: {said}")
        return HttpResponseRedirect(back)
    if changes:
        said = "; ".join(f"{c.team.slug} {c.field} {c.before} → {c.after}" for c in changes)
        messages.success(request, f"Saved {len(changes)} change(s): {said}. The next ticket routed uses them.")
    else:
        messages.info(request, "Nothing changed: the thresholds were already in force.")
    return HttpResponseRedirect(back)


@require_GET
@admin_required
def reports_page(request: HttpRequest) -> HttpResponse:
    """Model quality per model version and ISO week (``?format=json`` for the raw numbers)."""
    form = ReportForm(request.GET or None)
    version = form.cleaned_data["version"] if form.is_bound and form.is_valid() else None
    report = quality_report(model_version=version)
    if wants_json(request):
        return JsonResponse(report)
    by_version = []
    for total in report["totals"]:
        weeks = [r for r in report["rows"] if r["model_version_id"] == total["model_version_id"]]
        by_version.append({"total": total, "weeks": weeks})
    context = {
        "form": form,
        "report": report,
        "by_version": by_version,
        "columns": REPORT_COLUMNS,
        "accuracy_svg": plots.weekly_trend_svg(report["rows"], "accuracy", "Accuracy by week")
        if report["rows"]
        else None,
        "auto_precision_svg": plots.weekly_trend_svg(
            report["rows"], "auto_route_precision", "Auto-route precision by week"
        )
        if report["rows"]
        else None,
    }
    return render(request, "learning/reports.html", context)


# --- Tag thresholds -------------------------------------------------------------------------------------


def _tag_tuning_url(tag: Tag, n: int, version) -> str:
    query = QueryDict(_window_query(n, version), mutable=True)
    query["tag"] = str(tag.pk)
    return f"{reverse('learning:tuning')}?{query.urlencode()}#tune-tag"


@require_GET
@admin_required
def tag_what_if(request: HttpRequest) -> HttpResponse:
    """What a threshold would do for one tag on recorded predictions and agents' labels.

    HTML fragment for the tag slider (htmx), JSON with ``?format=json``; 400 with the reasons on bad input.
    """
    form = TagWhatIfForm(request.GET)
    if not form.is_valid():
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        if wants_json(request):
            return JsonResponse({"errors": errors}, status=400)
        return render(request, "learning/_what_if_error.html", {"errors": errors}, status=400)
    tag, threshold = form.cleaned_data["tag"], form.cleaned_data["threshold"]
    n, version = form.window()
    if wants_json(request):
        loaded = load_tag_outcomes(tag, last_n=n, model_version=version)
        return JsonResponse(
            {
                "tag": {"id": tag.pk, "key": loaded.outcomes.name, "threshold": tag.threshold},
                "what_if": tuning.class_what_if(loaded.outcomes, threshold).as_dict(),
                "saved": tuning.class_what_if(loaded.outcomes, tag.threshold).as_dict(),
                "window": {"n": n, "version": version.pk if version else None, "tickets": loaded.outcomes.window},
            }
        )
    return render(request, "learning/_tag_what_if.html", tag_page.tag_what_if_context(tag, n, threshold, version))


@require_POST
@admin_required
def save_tag_threshold(request: HttpRequest, pk: int) -> HttpResponse:
    """Save one tag's threshold (audited as a ``TagChange``); 400 with the reasons and nothing stored otherwise."""
    tag = get_object_or_404(Tag.objects.select_related("tag_set"), pk=pk)
    n, version = WindowForm.from_query(request.POST).window()
    form = TagThresholdForm(request.POST)
    name = f"{tag.tag_set.name}: {tag.name}"
    if form.is_valid():
        before = tag.threshold
        try:
            set_tag_threshold(
                tag, form.cleaned_data["threshold"], user=request.user, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            for err in exc.messages:
                form.add_error(None, err)
        else:
            name = f"{tag.tag_set.name}: {tag.name}"
            if tag.threshold != before:
                messages.success(
                    request, f"{name}: threshold {before} → {tag.threshold}. The next ticket scored uses it."
                )
            else:
                messages.info(request, f"{name}: nothing changed (threshold {before}).")
            return HttpResponseRedirect(_tag_tuning_url(tag, n, version))
    messages.error(
        request,
        f"{tag.tag_set.name}: {tag.name}: not saved. " + " ".join(e for errs in form.errors.values() for e in errs),
    )
    # An archived tag is not tuned: the page then shows the tags table without it.
    context = _page_context(request.POST, tag=None if tag.archived else tag, tag_form=form)
    return render(request, "learning/tuning.html", context, status=400)
