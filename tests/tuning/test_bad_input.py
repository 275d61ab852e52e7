"""Bad input on the tuning page: a clear message, a 400, and nothing saved."""

from __future__ import annotations

import pytest
from django.urls import reverse

from learning.tuning import Outcomes, suggest_threshold
from tests.tuning.builders import make_version
from triage.models import Correction, Prediction, Team, TeamChange, Ticket


def assert_nothing_saved():
    assert not TeamChange.objects.exists()
    assert set(Team.objects.values_list("mode", "threshold")) == {("auto", 0.9)}


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["1.5", "-0.2", "abc", "nan", "inf", ""])
def test_saving_a_threshold_outside_zero_and_one_says_so_and_saves_nothing(admin_client_ada, teams, bad):
    response = admin_client_ada.post(
        reverse("learning:save_team_routing", kwargs={"slug": "billing"}), {"mode": "suggest", "threshold": bad}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Billing: not saved." in html
    assert 'data-testid="threshold-error"' in html
    assert ("between 0 and 1" in html) or ("required" in html)
    assert_nothing_saved()


@pytest.mark.django_db
def test_an_unknown_mode_is_refused_with_a_message(admin_client_ada, teams):
    response = admin_client_ada.post(
        reverse("learning:save_team_routing", kwargs={"slug": "billing"}), {"mode": "reckless", "threshold": "0.5"}
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert_nothing_saved()


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["1.5", "-0.01", "nope"])
def test_the_what_if_refuses_thresholds_outside_zero_and_one(admin_client_ada, teams, bad):
    response = admin_client_ada.get(
        reverse("learning:what_if"), {"team": "billing", "threshold": bad, "format": "json"}
    )
    assert response.status_code == 400
    assert "between 0 and 1" in " ".join(response.json()["errors"]["threshold"])
    fragment = admin_client_ada.get(reverse("learning:what_if"), {"team": "billing", "threshold": bad})
    assert fragment.status_code == 400 and "between 0 and 1" in fragment.content.decode()


@pytest.mark.django_db
def test_the_what_if_names_an_unknown_team(admin_client_ada, teams):
    response = admin_client_ada.get(
        reverse("learning:what_if"), {"team": "nobody", "threshold": "0.5", "format": "json"}
    )
    assert response.status_code == 400 and "Unknown team 'nobody'" in response.json()["errors"]["team"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["1.5", "0", "-1", "x"])
def test_a_target_precision_outside_zero_and_one_is_refused(admin_client_ada, teams, bad):
    response = admin_client_ada.get(reverse("learning:suggest_thresholds"), {"target": bad, "format": "json"})
    assert response.status_code == 400
    assert "Target precision must be" in response.json()["errors"]["target"][0]


def _record(team: Team, version, confidence: float, label: str | None) -> None:
    ticket = Ticket.objects.create(subject="s", body="b")
    Prediction.objects.create(
        ticket=ticket,
        model_version=version,
        scorer="fixture",
        scores={team.slug: confidence},
        chosen_team=team,
        confidence=confidence,
        decision="suggested",
    )
    if label:
        Correction.objects.create(
            ticket=ticket, kind="corrected", to_team_slug=label, to_team=Team.objects.get(slug=label)
        )


@pytest.mark.django_db
def test_a_target_no_threshold_reaches_says_the_best_there_is(admin_client_ada, teams):
    version = make_version("v1")
    # Billing is right on 3 of its 5 labeled predictions, wherever the threshold is put.
    for conf, label in [(0.95, "orders"), (0.9, "billing"), (0.85, "billing"), (0.8, "orders"), (0.7, "billing")]:
        _record(teams["billing"], version, conf, label)
    response = admin_client_ada.get(
        reverse("learning:suggest_thresholds"),
        {"target": "0.99", "min_support": "2", "team": "billing", "format": "json"},
    )
    [suggestion] = response.json()["suggestions"]
    assert suggestion["ok"] is False and suggestion["threshold"] is None
    assert suggestion["message"] == (
        "No threshold reaches precision 0.990 for team 'billing' with at least 2 labeled tickets "
        "(best is 0.667 at θ = 0.850, on 3 labeled tickets)."
    )
    html = admin_client_ada.get(
        reverse("learning:tuning"), {"target": "0.99", "min_support": "2", "team": "billing"}
    ).content.decode()
    assert "No threshold reaches precision 0.990" in html
    assert_nothing_saved()


@pytest.mark.django_db
def test_a_team_with_no_labels_gets_a_clear_message_everywhere(admin_client_ada, teams):
    version = make_version("v1")
    _record(teams["returns"], version, 0.97, None)
    _record(teams["returns"], version, 0.91, None)
    response = admin_client_ada.get(
        reverse("learning:suggest_thresholds"), {"target": "0.9", "team": "returns", "format": "json"}
    )
    [suggestion] = response.json()["suggestions"]
    assert suggestion["ok"] is False
    assert "'returns' has no labeled predictions in this window" in suggestion["message"]
    what_if = admin_client_ada.get(
        reverse("learning:what_if"), {"team": "returns", "threshold": "0.9", "format": "json"}
    ).json()["what_if"]
    assert (what_if["routed"], what_if["precision"], what_if["label_count"]) == (2, None, 0)
    page = admin_client_ada.get(reverse("learning:tuning"), {"team": "returns"}).content.decode()
    assert page.count('data-testid="whatif-precision">—<') == 1
    assert 'data-testid="whatif-no-labels"' in page
    assert_nothing_saved()


@pytest.mark.django_db
def test_applying_a_bad_suggested_threshold_saves_no_team(admin_client_ada, teams):
    response = admin_client_ada.post(
        reverse("learning:apply_thresholds"),
        {"apply": ["billing", "orders"], "threshold_billing": "0.6", "threshold_orders": "7"},
        follow=True,
    )
    assert "Nothing saved: orders: threshold must be between 0 and 1" in response.content.decode()
    assert_nothing_saved()


@pytest.mark.django_db
def test_applying_with_no_team_ticked_or_an_unknown_team_saves_nothing(admin_client_ada, teams):
    assert (
        "no team was ticked"
        in admin_client_ada.post(reverse("learning:apply_thresholds"), {}, follow=True).content.decode()
    )
    response = admin_client_ada.post(
        reverse("learning:apply_thresholds"), {"apply": ["ghost"], "threshold_ghost": "0.5"}, follow=True
    )
    assert "unknown team &#x27;ghost&#x27;" in response.content.decode()
    assert_nothing_saved()


def test_the_pure_suggestion_agrees_with_the_endpoint_on_the_same_rows():
    rows = [(1, "billing", 0.95, "orders"), (2, "billing", 0.9, "billing"), (3, "billing", 0.85, "billing")]
    s = suggest_threshold(Outcomes.from_rows(rows), "billing", 0.99, min_support=2)
    assert (s.best_precision, s.best_threshold) == (2 / 3, 0.85)
