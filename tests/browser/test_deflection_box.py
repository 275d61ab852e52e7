"""The new-ticket form's live box in a real browser: articles appear as the message is typed, asked for
once the typing pauses (debounced), and "no article fits" for a question the help centre does not cover."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.search.conftest import store_kb

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def kb(transactional_db):
    from mlops.inference.encoders import get_embedder

    return store_kb(get_embedder())


def test_articles_appear_while_the_message_is_typed_and_requests_wait_for_a_pause(agent_page, kb, screenshot):
    page = agent_page
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/kb/deflect/" in request.url else None)
    page.goto("/tickets/new/")
    box = page.get_by_test_id("deflection")
    expect(box.get_by_test_id("deflection-waiting")).to_be_visible()
    message = "I was charged for a renewal I did not want, can I get a refund"
    page.get_by_label("Message").press_sequentially(message, delay=30)  # faster than the 300 ms pause
    expect(box.get_by_test_id("deflection-article").first).to_contain_text("Request a refund for a subscription")
    screenshot(page, "deflection-refund")
    # One request per pause, not one per keystroke (a slow machine may pause once or twice mid-sentence).
    assert 1 <= len(asked) <= 5, asked

    page.get_by_label("Message").fill("what is the capital of australia and how many people live there")
    expect(box.get_by_test_id("deflection-none")).to_be_visible()
    expect(box.get_by_test_id("deflection-article")).to_have_count(0)
    screenshot(page, "deflection-none")

    # The form still creates the ticket as before.
    page.get_by_role("button", name="Create ticket").click()
    expect(page.get_by_test_id("ticket-subject")).to_be_visible()
