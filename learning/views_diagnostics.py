"""The model diagnostics page (admins): the last ``diagnose_models`` run, and a button that runs it again
on an inference worker (``diagnose_models_task``; the models never load in a web process)."""

from __future__ import annotations

from celery.result import AsyncResult
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from triage.roles import admin_required

from .diagnostics import load_report
from .forms import DiagnosticsForm

# Celery task ids are UUIDs; anything else is not a run of this page.
TASK_ID_CHARS = set("0123456789abcdef-")


@require_GET
@admin_required
def diagnostics_page(request: HttpRequest) -> HttpResponse:
    report = load_report()
    form = DiagnosticsForm(initial=report.options if report else None)
    return render(request, "learning/diagnostics.html", {"report": report, "form": form})


@require_POST
@admin_required
def run_diagnostics(request: HttpRequest) -> HttpResponse:
    """Queue a run with the sample sizes of the form; answers the fragment that polls for it."""
    from .tasks import diagnose_models_task

    form = DiagnosticsForm(request.POST)
    if not form.is_valid():
        errors = [f"{form.fields[f].label}: {e}" for f, errs in form.errors.items() for e in errs]
        return render(request, "learning/_diagnostics_run.html", {"errors": errors}, status=400)
    result = diagnose_models_task.delay(**form.cleaned_data)
    return render(request, "learning/_diagnostics_run.html", {"task_id": result.id, "state": "PENDING"})


@require_GET
@admin_required
def diagnostics_run(request: HttpRequest, task_id: str) -> HttpResponse:
    if not task_id or set(task_id) - TASK_ID_CHARS:
        return render(request, "learning/_diagnostics_run.html", {"errors": ["no such run"]}, status=404)
    result = AsyncResult(task_id)
    context: dict = {"task_id": task_id, "state": result.state}
    if result.state == "PROGRESS" and isinstance(result.info, dict):
        context["step"] = result.info.get("step", "")
    elif result.state == "SUCCESS":
        context["report"] = load_report()
    elif result.state == "FAILURE":
        context["errors"] = [f"the run failed: {result.info}"]
    return render(request, "learning/_diagnostics_run.html", context)
