"""The what-if endpoint recomputes from recorded predictions and labels exactly as written out here."""

from __future__ import annotations

import pytest
from django.urls import reverse

from learning.reports import load_outcomes
from tests.tuning.builders import TEAM_SLUGS


def direct(window, team: str, theta: float, mode: str) -> dict:
    """The definitions on the page, applied to the fixture's own record of what it wrote."""
    predicted = [(p, y) for p, y in window if p.top == team]
    routed = [(p, y) for p, y in predicted if p.confidence >= theta]
    labeled = [(p, y) for p, y in routed if y is not None]
    correct = sum(1 for _, y in labeled if y == team)
    label_count = sum(1 for _, y in window if y == team)
    auto = mode == "auto"
    return {
        "window": len(window),
        "predicted": len(predicted),
        "routed": len(routed),
        "auto_routed": len(routed) if auto else 0,
        "correct": correct,
        "wrong": len(labeled) - correct,
        "auto_routed_wrong": (len(labeled) - correct) if auto else 0,
        "unlabeled": len(routed) - len(labeled),
        "label_count": label_count,
        "precision": correct / len(labeled) if labeled else None,
        "recall": correct / label_count if label_count else None,
        "coverage": len(routed) / len(predicted) if predicted else None,
    }


@pytest.mark.django_db
def test_what_if_json_equals_a_direct_computation(admin_client_ada, history):
    # One history for every case: building it is the slow part.
    for n in (0, 25, 100):
        for theta in (0.0, 0.4, 0.5, 0.62, 0.8, 1.0):
            for team in TEAM_SLUGS:
                response = admin_client_ada.get(
                    reverse("learning:what_if"),
                    {"team": team, "threshold": theta, "n": n, "mode": "auto", "format": "json"},
                )
                assert response.status_code == 200
                got = response.json()["what_if"]
                expected = direct(history.window(n), team, theta, "auto")
                assert {k: got[k] for k in expected} == expected, (n, theta, team)


@pytest.mark.django_db
def test_what_if_for_one_model_version_uses_only_its_predictions(admin_client_ada, history):
    new = history.versions[1]
    response = admin_client_ada.get(
        reverse("learning:what_if"),
        {"team": "billing", "threshold": 0.45, "n": 0, "version": new.pk, "format": "json"},
    )
    got = response.json()["what_if"]
    expected = direct(history.window(0, version_id=new.pk), "billing", 0.45, "auto")
    assert {k: got[k] for k in expected} == expected
    assert got["window"] < len(history.ticket_created)


@pytest.mark.django_db
def test_what_if_in_suggest_mode_auto_routes_nothing(admin_client_ada, history):
    response = admin_client_ada.get(
        reverse("learning:what_if"), {"team": "orders", "threshold": 0.3, "n": 0, "mode": "suggest", "format": "json"}
    )
    got = response.json()["what_if"]
    assert got["auto_routed"] == 0 and got["routed"] > 0
    assert got == {**got, **direct(history.window(0), "orders", 0.3, "suggest")}


@pytest.mark.django_db
def test_the_latest_label_and_the_latest_prediction_of_a_ticket_count(history):
    outcomes = load_outcomes(last_n=0)
    relabeled = [t for t, rows in history.labels.items() if len(rows) > 1]
    repredicted = {p.ticket_id for p in history.predictions} - {
        t for t in history.ticket_created if sum(p.ticket_id == t for p in history.predictions) == 1
    }
    assert relabeled and repredicted
    by_ticket = {int(t): i for i, t in enumerate(outcomes.ticket_ids)}
    for ticket_id in relabeled:
        assert outcomes.label[by_ticket[ticket_id]] == history.latest_label(ticket_id)
    for ticket_id in repredicted:
        latest = history.latest_prediction(ticket_id)
        assert outcomes.top[by_ticket[ticket_id]] == latest.top
        assert outcomes.confidence[by_ticket[ticket_id]] == latest.confidence


@pytest.mark.django_db
def test_the_window_is_the_newest_tickets(history):
    outcomes = load_outcomes(last_n=10)
    assert [int(t) for t in outcomes.ticket_ids] == [p.ticket_id for p, _ in history.window(10)]


@pytest.mark.django_db
def test_the_html_fragment_shows_the_numbers_and_the_curve(admin_client_ada, history):
    response = admin_client_ada.get(reverse("learning:what_if"), {"team": "billing", "threshold": 0.5, "n": 0})
    assert response.status_code == 200
    html = response.content.decode()
    expected = direct(history.window(0), "billing", 0.5, "auto")
    assert f'data-testid="whatif-auto-routed">{expected["auto_routed"]}<' in html
    assert f'data-testid="whatif-wrong">{expected["auto_routed_wrong"]}<' in html
    assert f'data-testid="whatif-precision">{expected["precision"]:.3f}<' in html
    assert "<svg" in html and 'data-testid="pr-table"' in html
