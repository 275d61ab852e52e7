"""An admin tunes a threshold in a real browser: the what-if follows the slider, the save is audited,
and (with a real worker) the next ticket routed obeys the new threshold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.tuning.builders import build_history
from tests.tuning.test_what_if import direct
from tests.workers import wait_for
from triage.models import Prediction, Team, TeamChange, Ticket

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DEMO = Path(__file__).resolve().parents[2] / "triage" / "demo_data"
# The worker loads its models on first use; on a small shared machine that takes a while.
ROUTED_WITHIN_S = 300


def _slide(page, value: float) -> None:
    """Move the slider as a person would end up: the range input's value changes and fires input."""
    page.get_by_test_id("threshold-slider").fill(str(value))


def test_moving_the_slider_updates_the_what_if_and_saving_is_audited(admin_page, admin_ada, screenshot):
    history = build_history()
    page = admin_page
    page.goto("/models/tuning/?n=0&team=billing")
    expect(page.get_by_test_id("whatif-threshold")).to_have_text("0.900")
    screenshot(page, "tuning-billing")

    for theta in (0.3, 0.55):
        expected = direct(history.window(0), "billing", theta, "auto")
        _slide(page, theta)
        expect(page.get_by_test_id("whatif-threshold")).to_have_text(f"{theta:.3f}")
        expect(page.get_by_test_id("whatif-auto-routed")).to_have_text(str(expected["auto_routed"]))
        expect(page.get_by_test_id("whatif-wrong")).to_have_text(str(expected["auto_routed_wrong"]))
        expect(page.get_by_test_id("whatif-precision")).to_have_text(f"{expected['precision']:.3f}")
        expect(page.get_by_test_id("whatif-unsaved")).to_be_visible()
    # The number box follows the slider, so Save sends what the what-if shows.
    expect(page.get_by_test_id("threshold-input")).to_have_value("0.55")
    screenshot(page, "slider-moved")

    page.get_by_test_id("reason").fill("route more billing tickets")
    page.get_by_test_id("save-routing").click()
    expect(page.locator(".messages")).to_contain_text("threshold 0.9 → 0.55")
    expect(page.get_by_test_id("audit-log")).to_contain_text("route more billing tickets")
    expect(page.get_by_test_id("whatif-threshold")).to_have_text("0.550")
    screenshot(page, "saved")
    change = TeamChange.objects.get()
    assert (change.team.slug, change.field, change.before, change.after, change.user) == (
        "billing",
        "threshold",
        "0.9",
        "0.55",
        admin_ada,
    )
    assert Team.objects.get(slug="billing").threshold == 0.55


def test_a_threshold_outside_zero_and_one_is_refused_in_the_browser(admin_page, screenshot):
    build_history(n_tickets=20, with_marks=False)
    page = admin_page
    page.goto("/models/tuning/?team=orders")
    box = page.get_by_test_id("threshold-input")
    box.fill("1.5")
    expect(page.get_by_test_id("input-errors")).to_contain_text("between 0 and 1")
    # The browser's own range check would stop the form; an admin's script or old browser would not.
    page.evaluate("document.getElementById('routing-form').noValidate = true")
    page.get_by_test_id("save-routing").click()
    expect(page.get_by_test_id("threshold-error")).to_contain_text("between 0 and 1")
    screenshot(page, "refused")
    assert not TeamChange.objects.exists() and Team.objects.get(slug="orders").threshold == 0.9


def test_agents_get_403_on_the_tuning_page(agent_page):
    response = agent_page.goto("/models/tuning/")
    assert response.status == 403
    assert agent_page.goto("/models/reports/").status == 403


# --- End to end with a real worker ---------------------------------------------------------------------

BILLING_TEXT = (
    "Charged twice for Brightnest Plus",
    "My card was charged twice for my Brightnest Plus subscription this month. Please refund one of the charges.",
)


def _load_teams() -> None:
    for spec in json.loads((DEMO / "teams.json").read_text()):
        Team.objects.update_or_create(
            slug=spec["slug"],
            defaults={k: spec[k] for k in ("name", "description", "hypothesis")} | {"mode": Team.Mode.SUGGEST},
        )


def _route(subject: str, body: str, worker) -> Prediction:
    from triage.services import create_ticket

    ticket, _ = create_ticket({"subject": subject, "body": body})
    return wait_for(
        lambda: Prediction.objects.select_related("chosen_team").filter(ticket=ticket).first(),
        timeout=ROUTED_WITHIN_S,
        message=f"the worker to route ticket {ticket.pk}:\n{worker.log()[-3000:]}",
    )


def _save(page, team: str, theta: float, mode: str) -> None:
    page.goto(f"/models/tuning/?team={team}")
    page.get_by_test_id("mode").select_option(mode)
    _slide(page, theta)
    expect(page.get_by_test_id("whatif-threshold")).to_have_text(f"{theta:.3f}")
    page.get_by_test_id("save-routing").click()
    expect(
        page.get_by_test_id("team-table").locator(f'tr[data-team="{team}"] [data-testid="team-threshold"]')
    ).to_have_text(f"{theta:.3f}")


@pytest.mark.slow
def test_the_next_routed_ticket_obeys_the_threshold_saved_in_the_browser(worker, admin_page, screenshot):
    page = admin_page
    _load_teams()

    first = _route(*BILLING_TEXT, worker)
    team, confidence = first.chosen_team.slug if first.chosen_team else first.top(1)[0][0], first.confidence
    assert confidence is not None and 0.0 < confidence < 1.0, f"a routing confidence to tune around: {confidence}"

    # Above the ticket's confidence: the what-if shows it would not be routed, and the next one is not.
    above = round(min(1.0, confidence + 0.02), 3)
    page.goto(f"/models/tuning/?team={team}")
    page.get_by_test_id("mode").select_option("auto")
    _slide(page, max(0.0, round(confidence - 0.02, 3)))
    expect(page.get_by_test_id("whatif-auto-routed")).not_to_have_text("0")
    routed_below = page.get_by_test_id("whatif-routed").inner_text()
    _slide(page, above)
    expect(page.get_by_test_id("whatif-routed")).not_to_have_text(routed_below)
    screenshot(page, "what-if-above-confidence")
    _save(page, team, above, "auto")
    second = _route(*BILLING_TEXT, worker)
    assert second.confidence == pytest.approx(confidence, abs=1e-6), "the same text should score the same"
    assert second.threshold == pytest.approx(above)
    assert second.decision != Prediction.Decision.AUTO_ROUTED

    # Below it: the next ticket with the same text is auto-routed to the team, no restart in between.
    below = round(max(0.0, confidence - 0.05), 3)
    _save(page, team, below, "auto")
    screenshot(page, "saved-below-confidence")
    third = _route(*BILLING_TEXT, worker)
    assert third.threshold == pytest.approx(below)
    assert third.decision == Prediction.Decision.AUTO_ROUTED and third.chosen_team.slug == team
    wait_for(lambda: Ticket.objects.get(pk=third.ticket_id).team_id == third.chosen_team_id, timeout=30)
    page.goto(f"/tickets/{third.ticket_id}/")
    expect(page.get_by_test_id("decision-kind")).to_have_text(re.compile("Auto-routed"))
    screenshot(page, "ticket-auto-routed")
    assert TeamChange.objects.filter(team__slug=team, field="threshold").count() == 2
