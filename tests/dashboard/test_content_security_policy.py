"""Every page is served with a Content-Security-Policy that runs scripts and style sheets from our own
files only, and no page carries inline script, inline <style> or event-handler attributes that it would
block. (The browser tests in tests/browser check that the pages still work under it.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from mlops.models import TrainingRun
from tests.dashboard.builders import decide, make_model_version, make_suggestion, make_ticket


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def inline_code(html: str) -> list[str]:
    """Inline scripts (a <script> without src that is not JSON data), <style> elements, on*= handlers."""
    found = [
        tag
        for tag in re.findall(r"<script\b[^>]*>", html, flags=re.I)
        if "src=" not in tag and 'type="application/json"' not in tag
    ]
    found += re.findall(r"<style\b[^>]*>", html, flags=re.I)
    found += re.findall(r"<[^>]+\son[a-z]+\s*=", html, flags=re.I)
    found += re.findall(r"javascript:", html, flags=re.I)
    return found


@pytest.fixture
def pages(db, teams, admin_ada) -> list[str]:
    ticket = make_ticket()
    version = make_model_version()
    decide(ticket, {"billing": 0.6})
    make_suggestion(ticket, "Refunds", "How refunds work.")
    run = TrainingRun.objects.create(model_version=version, state="running", log="step 1")
    return [
        reverse("triage:queue"),
        reverse("triage:ticket", args=[ticket.pk]),
        reverse("triage:ticket_history", args=[ticket.pk]),
        reverse("triage:new_ticket"),
        reverse("learning:tuning"),
        reverse("learning:reports"),
        reverse("learning:models"),
        reverse("learning:model_version", args=[version.pk]),
        reverse("learning:training_run", args=[run.pk]),
    ]


def test_every_dashboard_page_has_the_policy_and_no_inline_code(admin_client_ada, pages):
    for url in pages:
        response = admin_client_ada.get(url)
        assert response.status_code == 200, url
        directives = policy(response)
        assert directives["script-src"] == ["'self'"], url
        assert directives["style-src"] == ["'self'"], url
        assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"], url
        assert inline_code(response.content.decode()) == [], url


def test_the_login_and_lockout_pages_have_no_inline_code_either(agent_alice, settings):
    client = Client()
    login = client.get(reverse("login"))
    assert "script-src 'self'" in login["Content-Security-Policy"]
    assert inline_code(login.content.decode()) == []
    for i in range(settings.AXES_FAILURE_LIMIT):
        locked = client.post(reverse("login"), {"username": "alice", "password": f"wrong-{i}"})
    assert locked.status_code == 429
    assert inline_code(locked.content.decode()) == []


def test_only_the_api_docs_pages_may_use_inline_styles_and_they_run_no_inline_script(client, db):
    for url in ("/api/docs/", "/api/redoc/"):
        response = client.get(url)
        assert response.status_code == 200
        directives = policy(response)
        assert directives["script-src"] == ["'self'"]
        assert "'unsafe-inline'" in directives["style-src"]
        assert not [tag for tag in inline_code(response.content.decode()) if tag.startswith("<script")], url
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def test_no_template_carries_inline_script_style_or_event_handlers():
    """Pages the list above does not open are covered too: a template with inline code breaks under the policy."""
    root = Path(django_settings.BASE_DIR, "templates")
    templates = sorted(root.rglob("*.html"))
    assert len(templates) > 10
    for template in templates:
        text = re.sub(r"{% comment %}.*?{% endcomment %}|{#.*?#}", "", template.read_text(), flags=re.S)
        assert inline_code(text) == [], template
