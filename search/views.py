"""Knowledge-base pages: the new-ticket form's live deflection box, and how an article is found.

* ``deflect`` answers the box beside the new-ticket form (htmx, as the person types): the articles that
  fit the text so far, or "no article fits". Same roles as the form it serves.
* ``article_found`` is an article's "how it's found" page: the questions agents' marks taught it, the
  marks in force, and the tickets it was suggested for. Agents read it; admins also retract marks there.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from mlops.inference.encoders import ModelUnavailable
from triage.roles import admin_required, agent_required, is_admin

from .deflection import deflect as deflect_text
from .models import Article, LearnedQuestion, Suggestion, SuggestionFeedback
from .services import retract_mark

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
# A word or two is not a question yet: the box waits for this many before it searches.
MIN_WORDS = 2


@require_POST
@agent_required
def deflect(request: HttpRequest) -> HttpResponse:
    """The live box's content for the subject and message typed so far (``subject``, ``body``).

    Always 200 (htmx swaps only successful answers): what went wrong is said in the box. A message
    longer than ``SEARCH_DEFLECT_MAX_CHARS`` is read from its start.
    """
    text = f"{request.POST.get('subject', '')}\n\n{request.POST.get('body', '')}".strip()
    context: dict = {"result": None, "error": None, "waiting": len(text.split()) < MIN_WORDS}
    if not context["waiting"]:
        try:
            context["result"] = deflect_text(text[: settings.SEARCH_DEFLECT_MAX_CHARS])
        except ValidationError as error:
            context["error"] = " ".join(error.messages)
        except ModelUnavailable:
            logger.exception("deflection: the embedder is unavailable")
            context["error"] = "Article suggestions are unavailable right now."
    return render(request, "search/_deflection.html", context)


@require_GET
@agent_required
def article_found(request: HttpRequest, pk: int) -> HttpResponse:
    """How an article is found: its learned questions, marks in force, tickets it was suggested for."""
    article = get_object_or_404(Article.objects.select_related("team"), pk=pk)
    # One learned question per mark in force (a changed mind replaced the earlier one; a retracted mark
    # took its question with it), so these are the marks that teach the search now.
    marks = LearnedQuestion.objects.filter(article=article).aggregate(
        helpful_marks=Count("pk", filter=Q(helpful=True)),
        not_helpful_marks=Count("pk", filter=Q(helpful=False)),
        learned_before_edit=Count("pk", filter=Q(article_edited=True)),
        not_embedded=Count("pk", filter=Q(embedding__isnull=True)),
    )
    questions = Paginator(
        LearnedQuestion.objects.filter(article=article)
        .select_related("author", "ticket")
        .order_by("-marked_at", "-pk"),
        PAGE_SIZE,
    ).get_page(request.GET.get("questions"))
    suggested = Paginator(
        Suggestion.objects.filter(article=article)
        .select_related("ticket")
        .prefetch_related(
            Prefetch(
                "ticket__article_feedback",
                queryset=SuggestionFeedback.objects.filter(article=article).select_related("agent"),
                to_attr="marks_here",
            )
        )
        .order_by("-created_at", "-pk"),
        PAGE_SIZE,
    ).get_page(request.GET.get("page"))
    context = {
        "article": article,
        "marks": marks,
        "questions": questions,
        "suggested": suggested,
        "can_retract": is_admin(request.user),
    }
    return render(request, "search/article_found.html", context)


@require_POST
@admin_required
def retract_article_mark(request: HttpRequest, pk: int, mark_pk: int) -> HttpResponse:
    """An admin withdraws one mark on the article (and the question it taught) from its page."""
    article = get_object_or_404(Article, pk=pk)
    mark = SuggestionFeedback.objects.filter(pk=mark_pk, article=article).first()
    if mark is not None and retract_mark(mark):
        messages.success(request, "The mark is withdrawn; its question no longer teaches the search.")
    else:
        messages.info(request, "That mark was already withdrawn.")
    return redirect("search:article_found", pk=article.pk)
