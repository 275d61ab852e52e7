"""An admin tunes a tag's threshold in a real browser: the what-if follows the slider and the save is audited."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tags.models import Tag, TagChange
from tests.tuning.test_tag_thresholds import direct

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_tag_slider_updates_the_what_if_and_saving_is_audited(admin_page, admin_ada, topics_history, screenshot):
    security, rows = topics_history
    page = admin_page
    page.goto(f"/models/tuning/?n=0&tag={security.pk}#tune-tag")
    expect(page.get_by_test_id("tag-whatif-threshold")).to_have_text("0.500")
    for theta in (0.3, 0.62):
        expected = direct(rows, theta)
        page.get_by_test_id("tag-threshold-slider").fill(str(theta))
        expect(page.get_by_test_id("tag-whatif-threshold")).to_have_text(f"{theta:.3f}")
        expect(page.get_by_test_id("tag-whatif-routed")).to_have_text(str(expected["routed"]))
        expect(page.get_by_test_id("tag-whatif-wrong")).to_have_text(str(expected["wrong"]))
        expect(page.get_by_test_id("tag-whatif-precision")).to_have_text(f"{expected['precision']:.3f}")
    expect(page.get_by_test_id("tag-threshold-input")).to_have_value("0.62")
    screenshot(page, "tag-slider-moved")

    page.get_by_test_id("tag-reason").fill("fewer false security alarms")
    page.get_by_test_id("save-tag-threshold").click()
    expect(page.locator(".messages")).to_contain_text("threshold 0.5 → 0.62")
    expect(page.get_by_test_id("tag-audit-log")).to_contain_text("fewer false security alarms")
    expect(page.get_by_test_id("tag-whatif-threshold")).to_have_text("0.620")
    change = TagChange.objects.get(field="threshold")
    assert (change.tag_id, change.before, change.after, change.user) == (security.pk, "0.5", "0.62", admin_ada)
    assert Tag.objects.get(pk=security.pk).threshold == 0.62
