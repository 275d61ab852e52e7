"""Read recorded predictions, labels and suggestion marks out of the database for the tuning page
and the model-quality reports. The numbers are computed in ``learning/tuning.py`` and ``learning/quality.py``.

Which rows count:

* **label** of a ticket: its latest ``Correction`` (accepted, corrected, reassigned or imported);
  earlier ones are audit history.
* **prediction** of a ticket on the tuning page: its latest ``Prediction`` (or its latest by one
  model version, when a version is chosen); the window is the last N tickets by creation time.
* **reports**: every prediction, grouped by its model version and the ISO week it was made in.
* **suggestion marks**: the latest helpful/not-helpful mark per ticket and article.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.db.models import Subquery
from django.utils import timezone

from learning.quality import DecisionRow, quality
from learning.tuning import Outcomes
from mlops.models import ModelVersion
from search.models import SuggestionFeedback
from triage.models import Correction, Prediction

DEFAULT_WINDOW = 500
WINDOW_CHOICES = (100, 250, 500, 1000, 2500, 5000, 0)  # 0: every ticket with a prediction
MAX_WINDOW = 100_000


def top_team(scores: dict[str, float], chosen: str | None = None) -> str:
    """The team with the highest calibrated score; on a tie the team the router chose, else the
    first slug alphabetically (so the answer never depends on dict order)."""
    if not scores:
        return chosen or ""
    best = max(scores.values())
    tied = sorted(slug for slug, value in scores.items() if value == best)
    return chosen if chosen in tied else tied[0]


def _confidence(scores: dict[str, float], top: str, stored: float | None) -> float:
    if stored is not None:
        return float(stored)
    return float(scores.get(top, 0.0))


def load_outcomes(*, last_n: int | None = DEFAULT_WINDOW, model_version: ModelVersion | int | None = None) -> Outcomes:
    """The latest prediction of each of the last ``last_n`` tickets (all when 0 or None), with the
    ticket's latest label, newest ticket first."""
    predictions = Prediction.objects.all()
    if model_version is not None:
        predictions = predictions.filter(model_version=model_version)
    latest = predictions.latest_per_ticket().values("id")
    rows_qs = Prediction.objects.filter(id__in=Subquery(latest)).order_by("-ticket__created_at", "-ticket_id")
    if last_n:
        rows_qs = rows_qs[:last_n]
    rows = list(rows_qs.values_list("ticket_id", "scores", "confidence", "chosen_team__slug"))
    # A window of every ticket would make a huge IN list: ask by subquery then.
    ticket_ids = [r[0] for r in rows] if last_n else Subquery(latest.values("ticket_id"))
    labels = Correction.objects.filter(ticket_id__in=ticket_ids).slug_per_ticket()
    tops = [top_team(scores or {}, chosen) for _, scores, _, chosen in rows]
    return Outcomes.from_rows(
        (
            (ticket_id, top, _confidence(scores or {}, top, conf), labels.get(ticket_id))
            for (ticket_id, scores, conf, _), top in zip(rows, tops, strict=True)
        ),
        scores=[{k: float(v) for k, v in (scores or {}).items()} for _, scores, _, _ in rows],
    )


def iso_week(moment: dt.datetime) -> str:
    """``2025-W07`` for any moment in that ISO week (in the site's time zone)."""
    year, week, _ = timezone.localtime(moment).isocalendar()
    return f"{year}-W{week:02d}"


def _latest_marks(ticket_ids: Subquery) -> dict[int, list[tuple[int, int | None, bool]]]:
    rows = (
        SuggestionFeedback.objects.filter(ticket_id__in=ticket_ids)
        .order_by("ticket_id", "article_id", "-created_at", "-id")
        .distinct("ticket_id", "article_id")
        .values_list("ticket_id", "rank", "suggestion__rank", "helpful")
    )
    marks: dict[int, list[tuple[int, int | None, bool]]] = defaultdict(list)
    for ticket_id, rank, suggestion_rank, helpful in rows:
        marks[ticket_id].append((ticket_id, rank if rank is not None else suggestion_rank, helpful))
    return marks


def quality_report(*, model_version: ModelVersion | int | None = None) -> dict[str, Any]:
    """Per model version and ISO week: accuracy, macro-F1, ECE, auto-route rate and its precision,
    needs-triage rate and suggestion helpfulness; plus each version's totals over all weeks.

    Returns plain data (what ``quality_report --json`` writes)::

        {"generated_at": "...", "versions": [{"id": 3, "label": "setfit:v3", ...}],
         "rows": [{"model_version_id": 3, "week": "2025-W07", "accuracy": 0.91, ...}],
         "totals": [{"model_version_id": 3, "week": "all", ...}]}
    """
    predictions = Prediction.objects.all()
    if model_version is not None:
        predictions = predictions.filter(model_version=model_version)
    ticket_ids = Subquery(predictions.values("ticket_id"))
    labels = Correction.objects.filter(ticket_id__in=ticket_ids).slug_per_ticket()
    marks = _latest_marks(ticket_ids)

    groups: dict[tuple[int, str], list[DecisionRow]] = defaultdict(list)
    for ticket_id, version_id, created_at, scores, conf, decision, chosen in predictions.order_by(
        "created_at", "id"
    ).values_list(
        "ticket_id", "model_version_id", "created_at", "scores", "confidence", "decision", "chosen_team__slug"
    ):
        top = top_team(scores or {}, chosen)
        groups[(version_id, iso_week(created_at))].append(
            DecisionRow(ticket_id, top, _confidence(scores or {}, top, conf), decision, chosen, labels.get(ticket_id))
        )

    versions = {v.pk: v for v in ModelVersion.objects.filter(pk__in={version_id for version_id, _ in groups})}
    ordered_versions = sorted(versions.values(), key=lambda v: (v.created_at, v.pk), reverse=True)

    def row(version: ModelVersion, week: str, decisions: list[DecisionRow]) -> dict[str, Any]:
        tickets = {d.ticket_id for d in decisions}
        row_marks = [m for t in sorted(tickets) for m in marks.get(t, [])]
        numbers = quality(decisions, row_marks).as_dict()
        return {"model_version_id": version.pk, "model_version": str(version), "week": week, **numbers}

    rows, totals = [], []
    for version in ordered_versions:
        weeks = sorted(week for version_id, week in groups if version_id == version.pk)
        for week in weeks:
            rows.append(row(version, week, groups[(version.pk, week)]))
        totals.append(row(version, "all", [d for week in weeks for d in groups[(version.pk, week)]]))
    return {
        "generated_at": timezone.now().isoformat(),
        "versions": [
            {
                "id": v.pk,
                "label": str(v),
                "scorer": v.scorer,
                "version": v.version,
                "status": v.status,
                "created_at": v.created_at.isoformat(),
            }
            for v in ordered_versions
        ],
        "rows": rows,
        "totals": totals,
    }


REPORT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # key, short header for the terminal, header for the page
    ("predictions", "preds", "Predictions"),
    ("labeled", "labeled", "Labeled"),
    ("accuracy", "acc", "Accuracy"),
    ("macro_f1", "macroF1", "Macro-F1"),
    ("ece", "ECE", "ECE"),
    ("auto_route_rate", "auto%", "Auto-route rate"),
    ("auto_route_precision", "autoP", "Auto-route precision"),
    ("needs_triage_rate", "triage%", "Needs-triage rate"),
    ("suggestion_marks", "marks", "Suggestion marks"),
    ("helpful_share", "helpful", "Helpful share"),
    ("mrr", "MRR", "MRR (first helpful)"),
)


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table (what ``quality_report`` prints)."""
    if not report["rows"]:
        return "No predictions recorded yet: nothing to report.\n"
    header = ["model version", "week"] + [short for _, short, _ in REPORT_COLUMNS]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    lines = []
    by_version: dict[int, list[dict]] = defaultdict(list)
    for r in report["rows"]:
        by_version[r["model_version_id"]].append(r)
    for total in report["totals"]:
        lines.extend(by_version[total["model_version_id"]])
        lines.append(total)
    table = [header] + [[r["model_version"], r["week"]] + [cell(r[key]) for key, _, _ in REPORT_COLUMNS] for r in lines]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    out = []
    for n, row in enumerate(table):
        out.append(
            "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"
