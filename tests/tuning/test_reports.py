"""Quality reports per model version and ISO week, on the page, as JSON and from the command."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from search.models import SuggestionFeedback
from tests.tuning.builders import History


def iso_week(moment) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def direct_rows(history: History) -> dict[tuple[int, str], dict]:
    """Every report number for every (version, week), written out from the fixture's record."""
    groups = defaultdict(list)
    for p in history.predictions:
        groups[(p.version_id, iso_week(p.created_at))].append(p)
    for p in history.predictions:
        groups[(p.version_id, "all")].append(p)
    out = {}
    for key, predictions in groups.items():
        labeled = [(p, history.latest_label(p.ticket_id)) for p in predictions]
        labeled = [(p, y) for p, y in labeled if y is not None]
        auto = [p for p in predictions if p.decision == "auto_routed"]
        auto_labeled = [(p, history.latest_label(p.ticket_id)) for p in auto]
        auto_labeled = [(p, y) for p, y in auto_labeled if y is not None]
        # ECE over fifteen bins of top-team confidence
        bins = defaultdict(list)
        for p, y in labeled:
            bins[min(math.floor(p.confidence * 15), 14)].append((p.confidence, p.top == y))
        ece = sum(
            len(m) / len(labeled) * abs(sum(ok for _, ok in m) / len(m) - sum(c for c, _ in m) / len(m))
            for m in bins.values()
        )
        # macro-F1 over every team seen as label or top
        teams = sorted({p.top for p, _ in labeled} | {y for _, y in labeled})
        f1s = []
        for t in teams:
            tp = sum(1 for p, y in labeled if p.top == t and y == t)
            fp = sum(1 for p, y in labeled if p.top == t and y != t)
            fn = sum(1 for p, y in labeled if p.top != t and y == t)
            f1s.append(2 * tp / (2 * tp + fp + fn))
        tickets = {p.ticket_id for p in predictions}
        marks = [m for t in tickets for m in history.marks.get(t, [])]
        reciprocal = []
        for t in tickets:
            if history.marks.get(t):
                helpful = [rank for _, rank, ok, _ in history.marks[t] if ok]
                reciprocal.append(1 / min(helpful) if helpful else 0.0)
        out[key] = {
            "predictions": len(predictions),
            "labeled": len(labeled),
            "accuracy": sum(p.top == y for p, y in labeled) / len(labeled),
            "macro_f1": sum(f1s) / len(f1s),
            "ece": ece,
            "auto_route_rate": len(auto) / len(predictions),
            "auto_route_precision": (sum(p.chosen == y for p, y in auto_labeled) / len(auto_labeled))
            if auto_labeled
            else None,
            "needs_triage_rate": sum(p.decision in ("suggested", "abstained") for p in predictions) / len(predictions),
            "suggestion_marks": len(marks),
            "helpful_share": (sum(ok for _, _, ok, _ in marks) / len(marks)) if marks else None,
            "mrr": (sum(reciprocal) / len(reciprocal)) if reciprocal else None,
        }
    return out


def assert_same(got: dict, expected: dict):
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert got[key] == value, key


@pytest.mark.django_db
def test_report_json_equals_a_direct_computation_per_version_and_week(admin_client_ada, history):
    report = admin_client_ada.get(reverse("learning:reports"), {"format": "json"}).json()
    expected = direct_rows(history)
    got = {(r["model_version_id"], r["week"]): r for r in report["rows"] + report["totals"]}
    assert set(got) == set(expected)
    assert {r["week"] for r in report["rows"]} == {"2025-W10", "2025-W11", "2025-W12"}
    for key, numbers in expected.items():
        assert_same(got[key], numbers)


@pytest.mark.django_db
def test_the_report_can_be_limited_to_one_version(admin_client_ada, history):
    new = history.versions[1]
    report = admin_client_ada.get(reverse("learning:reports"), {"format": "json", "version": new.pk}).json()
    assert {r["model_version_id"] for r in report["rows"]} == {new.pk}
    assert report["versions"][0]["label"] == "fixture:v2"


@pytest.mark.django_db
def test_the_latest_mark_per_ticket_and_article_counts(admin_client_ada, history):
    ticket_id, marks = next((t, m) for t, m in history.marks.items() if m)
    article_id, rank, helpful, _ = marks[0]
    SuggestionFeedback.objects.create(ticket_id=ticket_id, article_id=article_id, rank=rank, helpful=not helpful)
    history.marks[ticket_id][0] = (article_id, rank, not helpful, None)
    report = admin_client_ada.get(reverse("learning:reports"), {"format": "json"}).json()
    got = {(r["model_version_id"], r["week"]): r for r in report["totals"]}
    for key, numbers in direct_rows(history).items():
        if key[1] == "all":
            assert_same(got[key], numbers)


@pytest.mark.django_db
def test_the_report_page_shows_every_version_and_week_with_its_plots(admin_client_ada, history):
    html = admin_client_ada.get(reverse("learning:reports")).content.decode()
    assert html.count('data-week="all"') == 2
    assert 'data-week="2025-W10"' in html and "fixture:v1" in html and "fixture:v2" in html
    assert html.count("<svg") == 2
    assert "MRR (first helpful)" in html and "Needs-triage rate" in html


@pytest.mark.django_db
def test_the_report_page_says_when_there_is_nothing_yet(admin_client_ada, teams):
    response = admin_client_ada.get(reverse("learning:reports"))
    assert 'data-testid="report-empty"' in response.content.decode()
    assert admin_client_ada.get(reverse("learning:reports"), {"format": "json"}).json()["rows"] == []


@pytest.mark.django_db
def test_quality_report_prints_the_same_numbers_and_writes_json(history, tmp_path, admin_client_ada):
    out = StringIO()
    target = tmp_path / "reports" / "quality.json"
    call_command("quality_report", "--json", str(target), stdout=out)
    text = out.getvalue()
    assert "fixture:v1" in text and "2025-W10" in text and "all" in text and f"JSON written to {target}" in text
    written = json.loads(target.read_text())
    page = admin_client_ada.get(reverse("learning:reports"), {"format": "json"}).json()
    for key in ("rows", "totals", "versions"):
        assert written[key] == page[key]
    expected = direct_rows(history)
    v1 = history.versions[0]
    total = next(r for r in written["totals"] if r["model_version_id"] == v1.pk)
    assert f"{expected[(v1.pk, 'all')]['accuracy']:.3f}" in text
    assert_same(total, expected[(v1.pk, "all")])


@pytest.mark.django_db
def test_quality_report_json_to_stdout_and_for_one_version(history):
    out = StringIO()
    call_command("quality_report", "--json", "-", "--model-version", str(history.versions[1].pk), stdout=out)
    report = json.loads(out.getvalue())
    assert {r["model_version_id"] for r in report["rows"]} == {history.versions[1].pk}


@pytest.mark.django_db
def test_quality_report_refuses_an_unknown_version(teams):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no model version with id 999"):
        call_command("quality_report", "--model-version", "999", stdout=StringIO())


@pytest.mark.django_db
def test_quality_report_on_an_empty_database_says_so(teams):
    out = StringIO()
    call_command("quality_report", stdout=out)
    assert "No predictions recorded yet" in out.getvalue()
