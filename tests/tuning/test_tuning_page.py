"""The tuning page: per-team numbers, the slider's what-if, suggestions, plots beside their numbers."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from learning.quality import confusion, overall_reliability
from learning.reports import load_outcomes
from learning.tuning import what_if
from triage.models import Team


def section(html: str, testid: str) -> str:
    return html.split(f'data-testid="{testid}"', 1)[1]


@pytest.mark.django_db
def test_the_page_shows_each_team_measured_at_its_saved_threshold(admin_client_ada, history):
    Team.objects.filter(slug="orders").update(mode="suggest", threshold=0.55)
    html = admin_client_ada.get(reverse("learning:tuning"), {"n": 0}).content.decode()
    outcomes = load_outcomes(last_n=0)
    table = section(html, "team-table").split("</table>")[0]
    for team in Team.objects.all():
        row = table.split(f'data-team="{team.slug}"')[1].split("</tr>")[0]
        w = what_if(outcomes, team.slug, team.threshold, team.mode)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert cells[1] == team.get_mode_display()
        assert cells[2] == f"{team.threshold:.3f}"
        assert cells[3] == str(w.label_count)
        assert cells[4] == (f"{w.precision:.3f}" if w.precision is not None else "—")
        assert cells[5] == (f"{w.recall:.3f}" if w.recall is not None else "—")
        assert cells[7] == (f"{w.coverage:.3f}" if w.coverage is not None else "—")
        assert cells[9] == str(w.auto_routed)
    assert "Suggest only" in table


@pytest.mark.django_db
def test_every_plot_has_its_numbers_beside_it(admin_client_ada, history):
    html = admin_client_ada.get(reverse("learning:tuning"), {"n": 0, "team": "orders"}).content.decode()
    # PR curve (selected team), team reliability, overall reliability, confusion matrix
    assert html.count("<svg") == 4
    for testid in ("pr-table", "team-reliability", "overall-reliability", "confusion-table"):
        assert f'data-testid="{testid}"' in html
    outcomes = load_outcomes(last_n=0)
    assert f"ECE = {overall_reliability(outcomes).ece:.3f}" in html
    matrix = confusion(outcomes)
    first_row = section(html, "confusion-table").split("<tbody>")[1].split("</tr>")[0]
    assert re.findall(r"<td>(\d+)</td>", first_row) == [str(v) for v in matrix.matrix[0]]


@pytest.mark.django_db
def test_the_slider_starts_at_the_saved_threshold_and_asks_for_a_live_what_if(admin_client_ada, history):
    Team.objects.filter(slug="billing").update(threshold=0.65)
    html = admin_client_ada.get(reverse("learning:tuning"), {"team": "billing"}).content.decode()
    slider = html.split('id="threshold-range"')[1].split(">")[0]
    assert 'hx-trigger="input changed delay:150ms"' in slider
    assert f'hx-get="{reverse("learning:what_if")}"' in slider
    assert 'value="0.65"' in slider
    assert 'data-testid="whatif-threshold">0.650<' in html


@pytest.mark.django_db
def test_the_definitions_are_on_the_page(admin_client_ada, teams):
    html = admin_client_ada.get(reverse("learning:tuning")).content.decode()
    defs = html.split('id="definitions"')[1]
    for term in ("Routed at θ", "Precision", "Recall", "Coverage", "Wrong", "ECE", "target precision"):
        assert term in defs


@pytest.mark.django_db
def test_suggestions_for_all_teams_are_listed_with_a_way_to_apply_them(admin_client_ada, history):
    html = admin_client_ada.get(
        reverse("learning:tuning"), {"n": 0, "target": "0.5", "min_support": "3"}
    ).content.decode()
    suggestions = section(html, "suggestions")
    for slug in ("billing", "orders", "account", "returns"):
        assert f'data-team="{slug}"' in suggestions
    assert 'name="apply"' in suggestions and 'data-testid="apply-suggestions"' in suggestions


@pytest.mark.django_db
def test_the_suggest_endpoint_returns_a_fragment_to_htmx(admin_client_ada, history):
    response = admin_client_ada.get(
        reverse("learning:suggest_thresholds"), {"n": 0, "target": "0.6", "team": "orders"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="suggestions"' in html and "<html" not in html and 'data-team="orders"' in html


@pytest.mark.django_db
def test_a_bad_window_falls_back_to_the_default_with_a_note(admin_client_ada, teams):
    html = admin_client_ada.get(reverse("learning:tuning"), {"n": "-3"}).content.decode()
    assert "showing the default window" in html
