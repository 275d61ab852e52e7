"""What the team and the tag what-if fragments of the tuning page both show, computed once for any class."""

from __future__ import annotations

from django.http import HttpRequest

from . import plots, tuning

AUDIT_ROWS = 25
# Thresholds shown in the table beside each precision-recall curve (the saved and tried ones are added).
GRID = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)


def wants_json(request: HttpRequest) -> bool:
    return request.GET.get("format") == "json" or "application/json" in request.headers.get("Accept", "")


def class_what_if_context(c: tuning.ClassOutcomes, saved: tuple[float, str], tried: tuple[float, str]) -> dict:
    """Numbers, curve table and plot of one class (a team, a tag) at a ``tried`` (threshold, mode), beside
    the ``saved`` one: what the team and the tag what-if fragments show."""
    tried_w = tuning.class_what_if(c, *tried)
    saved_w = tuning.class_what_if(c, *saved)
    table = []
    for theta in sorted({*GRID, saved[0], tried[0]}):
        row = tuning.class_what_if(c, theta, "auto")
        table.append({"w": row, "saved": theta == saved[0], "tried": theta == tried[0]})
    return {
        "tried": tried_w,
        "saved": saved_w,
        "changed": tried != saved,
        "curve_table": table,
        "pr_svg": plots.precision_recall_svg(
            tuning.class_curve(c), c.name, current=saved_w.point(), proposed=tried_w.point(), noun=c.noun
        ),
    }
