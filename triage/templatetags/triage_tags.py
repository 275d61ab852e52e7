"""Small display helpers for the dashboard templates. None of them marks ticket text as safe."""

from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse

register = template.Library()

_DECISION_CLASS = {"auto_routed": "ok", "suggested": "warn", "abstained": "alert"}
_STATUS_CLASS = {"new": "muted", "routing": "muted", "routed": "ok", "needs_triage": "alert", "resolved": "done"}


@register.filter
def percent(value) -> str:
    """0.873 -> "87%"; no value -> an em dash."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.0f}%"


@register.filter
def score(value) -> str:
    """A calibrated probability or a ranking score with two decimals."""
    if value is None or value == "":
        return "—"
    return f"{float(value):.2f}"


@register.filter
def decision_class(decision: str | None) -> str:
    return _DECISION_CLASS.get(decision or "", "muted")


@register.filter
def status_class(status: str | None) -> str:
    return _STATUS_CLASS.get(status or "", "muted")


@register.simple_tag
def optional_url(name: str) -> str:
    """``reverse(name)``, or "" when no such page is installed (links to pages another app builds)."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


@register.simple_tag
def routing_status():
    """What mlops says about routing right now (e.g. "NLI model unavailable, routing with embedding")."""
    from mlops.health import routing_status as current_status

    return current_status()


@register.filter
def is_admin(user) -> bool:
    from triage.roles import is_admin as check

    return check(user)


@register.filter
def passage_excerpt(suggestion, length: int = 320) -> str:
    """The matching passage of a suggestion without the article title it starts with, shortened.

    Returns plain text: the template escapes it like any other text.
    """
    from search.content import passage_excerpt as excerpt

    text = suggestion.passage_text or (suggestion.passage.text if suggestion.passage_id else "")
    return excerpt(text, suggestion.article.title, length)
