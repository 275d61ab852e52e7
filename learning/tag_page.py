"""The tag part of the tuning page (``learning.views``): the tags table at saved thresholds with suggestions,
and the selected tag's live what-if. Numbers come from ``learning.tag_tuning`` (a tag's predictions and
labels as one ``ClassOutcomes``) through the team what-if's functions."""

from __future__ import annotations

from django.conf import settings
from django.http import QueryDict

from mlops.calibration import MIN_THRESHOLD_SUPPORT
from mlops.models import ModelVersion
from tags.models import Tag, TagChange

from . import plots, tuning
from .forms import TagThresholdForm, WindowForm
from .tag_tuning import load_all_tag_outcomes, load_tag_outcomes
from .what_if_context import AUDIT_ROWS, class_what_if_context


def tag_what_if_context(tag: Tag, n: int, threshold: float, version: ModelVersion | None = None) -> dict:
    loaded = load_tag_outcomes(tag, last_n=n, model_version=version)
    return {"tag": tag, **class_what_if_context(loaded.outcomes, (tag.threshold, "auto"), (threshold, "auto"))}


def tag_section(
    query: QueryDict, *, target: float | None = None, selected: Tag | None = None, form: TagThresholdForm | None = None
) -> dict:
    """The tuning page's tag part: every current tag of an active set at its saved threshold, with its
    suggestion at the target precision, and the what-if of the selected tag (``?tag=<id>``); on the
    page's window and model version, as the team part."""
    n, version = WindowForm.from_query(query).window()
    target = settings.TRIAGE_TARGET_PRECISION if target is None else target
    loaded = load_all_tag_outcomes(last_n=n, model_version=version)
    rows = [
        {
            "tag": t.tag,
            "w": tuning.class_what_if(t.outcomes, t.tag.threshold),
            "s": tuning.suggest_class_threshold(t.outcomes, target, MIN_THRESHOLD_SUPPORT),
        }
        for t in loaded
    ]
    if selected is None and str(query.get("tag", "")).isdigit():
        selected = next((t.tag for t in loaded if t.tag.pk == int(query["tag"])), None)
    context: dict = {
        "tag_rows": rows,
        "tag_target": target,
        "tag_min_support": MIN_THRESHOLD_SUPPORT,
        "selected_tag": selected,
        "tag_audit": TagChange.objects.select_related("tag_set", "tag", "user")[:AUDIT_ROWS],
    }
    if selected is not None:
        mine = next((t for t in loaded if t.tag.pk == selected.pk), None) or load_tag_outcomes(
            selected, last_n=n, model_version=version
        )
        tried = selected.threshold
        if form is not None and form.is_bound:
            # Re-show what the admin tried when it parses, even though the save was refused.
            tried = form.cleaned_data.get("threshold", selected.threshold)
        context.update(
            {
                "tag_form": form or TagThresholdForm(initial={"threshold": selected.threshold}),
                "tag_suggestion": next(r["s"] for r in rows if r["tag"].pk == selected.pk)
                if any(r["tag"].pk == selected.pk for r in rows)
                else tuning.suggest_class_threshold(mine.outcomes, target, MIN_THRESHOLD_SUPPORT),
                "tag_what_if": {
                    "tag": selected,
                    **class_what_if_context(mine.outcomes, (selected.threshold, "auto"), (tried, "auto")),
                },
                "tag_reliability": mine.reliability,
                "tag_reliability_svg": plots.reliability_svg(mine.reliability, f"tag {mine.outcomes.name}"),
            }
        )
    return context
