"""Ticket text is data, never markup; every form carries a CSRF token and a POST without one is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from search.models import SuggestionFeedback
from tests.dashboard.builders import decide, make_suggestion, make_ticket
from triage.models import Correction

SCRIPT_SUBJECT = '<script>window.__xss = "subject"</script><b>bold</b>'
SCRIPT_BODY = "<img src=x onerror=\"window.__xss = 'body'\"><script>alert(1)</script>"


def test_ticket_subject_and_body_are_escaped_on_every_page(agent_client, teams):
    ticket = make_ticket(subject=SCRIPT_SUBJECT, body=SCRIPT_BODY)
    decide(ticket, {"billing": 0.6})
    for url in ("/", f"/tickets/{ticket.pk}/", "/?q=bold", f"/tickets/{ticket.pk}/history/"):
        body = agent_client.get(url).content.decode()
        assert "<script>window.__xss" not in body, url
        assert "<b>bold</b>" not in body, url
        assert "&lt;b&gt;bold&lt;/b&gt;" in body or url.endswith("/history/"), url
    page = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert "&lt;script&gt;window.__xss = &quot;subject&quot;&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=" in page
    assert "<img src=x" not in page


def test_article_titles_and_passages_are_escaped_too(agent_client, agent_alice):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "<i>Title</i>", "<script>alert('passage')</script>")
    SuggestionFeedback.objects.create(
        ticket=ticket, article=suggestion.article, suggestion=suggestion, helpful=True, agent=agent_alice
    )
    page = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert "<i>Title</i>" not in page and "&lt;i&gt;Title&lt;/i&gt;" in page
    assert "<script>alert('passage')" not in page


def test_no_dashboard_template_marks_anything_safe_or_turns_autoescape_off():
    root = Path(settings.BASE_DIR, "templates")
    templates = [*root.glob("triage/*.html"), *root.glob("registration/*.html"), root / "base.html"]
    assert templates
    for template in templates:
        text = template.read_text()
        assert "|safe" not in text, template
        assert "autoescape off" not in text, template
        assert "mark_safe" not in text, template


def _forms(html: str) -> list[str]:
    return re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S | re.I)


def test_every_post_form_on_every_page_carries_a_csrf_token(agent_client, teams):
    ticket = make_ticket()
    decide(ticket, {"billing": 0.6, "orders": 0.3})
    make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    pages = ["/", "/tickets/new/", f"/tickets/{ticket.pk}/", f"/tickets/{ticket.pk}/decision/"]
    posting = 0
    for url in pages:
        for form in _forms(agent_client.get(url).content.decode()):
            if re.search(r'method="post"', form, flags=re.I):
                posting += 1
                assert 'name="csrfmiddlewaretoken"' in form, (url, form[:200])
    # Logout, take, resolve, reassign, accept, three alternatives, correct, two feedback forms at least.
    assert posting >= 10
    anonymous = Client().get("/accounts/login/").content.decode()
    assert all('name="csrfmiddlewaretoken"' in form for form in _forms(anonymous))


def test_htmx_requests_send_the_csrf_token_as_a_header(agent_client):
    page = agent_client.get("/").content.decode()
    assert re.search(r"""hx-headers='\{"X-CSRFToken": "[A-Za-z0-9]{32,}"\}'""", page)


@pytest.mark.parametrize("action", ["accept", "correct", "reassign", "take", "resolve"])
def test_a_post_without_a_csrf_token_is_refused(agent_alice, teams, action):
    ticket = make_ticket()
    decide(ticket, {"billing": 0.6, "orders": 0.3})
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent_alice)
    response = client.post(f"/tickets/{ticket.pk}/{action}/", {"team": "orders"})
    assert response.status_code == 403
    assert not Correction.objects.exists()


def test_new_tickets_and_feedback_without_a_csrf_token_are_refused(agent_alice):
    ticket = make_ticket()
    suggestion = make_suggestion(ticket, "Track a parcel", "Use the tracking link.")
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent_alice)
    assert client.post("/tickets/new/", {"subject": "x", "body": "y", "channel": "web"}).status_code == 403
    feedback = f"/tickets/{ticket.pk}/suggestions/{suggestion.pk}/feedback/"
    assert client.post(feedback, {"helpful": "yes"}, HTTP_HX_REQUEST="true").status_code == 403
    assert not SuggestionFeedback.objects.exists()


def test_a_post_with_the_token_from_the_page_is_accepted(agent_alice):
    ticket = make_ticket()
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent_alice)
    page = client.get(f"/tickets/{ticket.pk}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(f"/tickets/{ticket.pk}/take/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
