"""An agent's day, end to end: a real browser, the live server and a real Celery worker routing tickets
and suggesting articles with the real models (the worker's, loaded offline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from search.models import Article, SuggestionFeedback
from tests.workers import wait_for
from triage.models import Correction, Team, Ticket

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEMO = Path(__file__).resolve().parents[2] / "triage" / "demo_data"
# A few help articles are enough for suggestions; the worker embeds each one before the tickets arrive.
ARTICLES = ("kb-002", "kb-005", "kb-013", "kb-014")
# The worker loads its models on first use; on a small shared machine that takes a while.
ROUTED_WITHIN_MS = 240_000


def _load_teams() -> None:
    for spec in json.loads((DEMO / "teams.json").read_text()):
        Team.objects.update_or_create(
            slug=spec["slug"], defaults={k: spec[k] for k in ("name", "description", "hypothesis")}
        )


def _load_articles() -> int:
    from search.services import upsert_article

    rows = [json.loads(line) for line in (DEMO / "articles.jsonl").read_text().splitlines() if line.strip()]
    wanted = [row for row in rows if row["id"] in ARTICLES]
    for row in wanted:
        upsert_article({"external_id": row["id"], "title": row["title"], "body": row["body"]})
    return len(wanted)


def _create_ticket(page, subject: str, body: str) -> int:
    page.goto("/tickets/new/")
    page.get_by_label("Subject").fill(subject)
    page.get_by_label("Message").fill(body)
    page.get_by_role("button", name="Create ticket").click()
    page.wait_for_url(re.compile(r"/tickets/\d+/$"))
    return int(re.search(r"/tickets/(\d+)/", page.url).group(1))


def test_an_agent_triages_tickets_routed_by_a_real_worker(worker, agent_page, agent_alice, screenshot):
    page = agent_page
    _load_teams()
    articles = _load_articles()
    wait_for(
        lambda: Article.objects.searchable().count() == articles,
        timeout=240,
        message=f"the worker to index {articles} articles:\n{worker.log()[-3000:]}",
    )
    screenshot(page, "queue-after-login")

    # A new ticket shows "routing…", then the decision, without a reload.
    billing = _create_ticket(
        page,
        "Charged twice for Brightnest Plus",
        "My card was charged twice for my Brightnest Plus subscription this month. Please refund one charge.",
    )
    page.evaluate("window.__sameDocument = true")
    expect(page.get_by_test_id("routing-pending")).to_be_visible()
    screenshot(page, "ticket-routing")
    expect(page.get_by_test_id("decision-kind")).to_be_visible(timeout=ROUTED_WITHIN_MS)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded instead of updating in place"
    expect(page.get_by_test_id("alternatives").get_by_role("button")).to_have_count(3)
    expect(page.get_by_test_id("decided-by")).to_contain_text("Decided by")
    screenshot(page, "ticket-routed")

    # Accept it with the keyboard.
    accept = page.locator('[data-shortcut="accept"]')
    expect(accept).to_be_enabled()
    page.keyboard.press("a")
    expect(page.get_by_test_id("history-label")).to_contain_text("Accepted by alice")
    screenshot(page, "ticket-accepted")

    # The article suggestions arrive (computed by the worker) and one is marked helpful.
    suggestion = page.get_by_test_id("suggestion").first
    expect(suggestion).to_be_visible(timeout=ROUTED_WITHIN_MS)
    suggestion.locator('[data-action="helpful"]').click()
    expect(suggestion.get_by_test_id("feedback-state")).to_have_text("You marked this helpful.")
    expect(page.get_by_test_id("history-feedback")).to_contain_text("Helpful by alice")
    screenshot(page, "suggestion-helpful")

    # A second ticket, corrected to its second alternative with the keyboard.
    other = _create_ticket(
        page,
        "Parcel never arrived",
        "The tracking page says my order was delivered on Monday but there was no parcel at my door.",
    )
    expect(page.get_by_test_id("decision-kind")).to_be_visible(timeout=ROUTED_WITHIN_MS)
    second_choice = page.locator('[data-shortcut="alt-2"] .name').inner_text()
    page.keyboard.press("2")
    expect(page.get_by_test_id("history-label")).to_contain_text("Corrected by alice")
    expect(page.get_by_test_id("history-label")).to_contain_text(f"→ {second_choice}")
    expect(page.get_by_test_id("ticket-team")).to_have_text(second_choice)
    screenshot(page, "ticket-corrected")

    # Both labels are stored with who, when, from, to, the model version and the prediction they answer.
    accepted = Correction.objects.get(ticket_id=billing)
    corrected = Correction.objects.get(ticket_id=other)
    assert accepted.kind == Correction.Kind.ACCEPTED and corrected.kind == Correction.Kind.CORRECTED
    for label in (accepted, corrected):
        assert label.agent == agent_alice and label.created_at is not None
        assert label.prediction is not None and label.model_version_id == label.prediction.model_version_id
    assert accepted.to_team == accepted.from_team
    assert corrected.to_team != corrected.from_team and corrected.to_team.name == second_choice
    assert Ticket.objects.get(pk=other).team == corrected.to_team
    assert SuggestionFeedback.objects.get(ticket_id=billing, agent=agent_alice).helpful is True

    # Back on the first ticket, its history shows the acceptance and the helpful mark.
    page.goto(f"/tickets/{billing}/")
    expect(page.get_by_test_id("history-label")).to_contain_text("Accepted by alice")
    expect(page.get_by_test_id("history-feedback")).to_contain_text("Helpful by alice")
    screenshot(page, "history")
