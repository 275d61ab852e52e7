"""The ticket page's tags panel and the one-click add / remove of a tag (each change a ``TagLabel``)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from triage.models import Ticket
from triage.queues import QueueParams
from triage.roles import agent_required

from .dashboard import change_tag, ticket_panel
from .models import Tag, TagLabel


@require_GET
@agent_required
def ticket_tags(request: HttpRequest, pk: int) -> HttpResponse:
    """The tags panel; reloaded when routing (which scores the tags) finishes."""
    return HttpResponse(ticket_panel(request, get_object_or_404(Ticket, pk=pk)))


@require_POST
@agent_required
def toggle_tag(request: HttpRequest, pk: int, tag_pk: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket, pk=pk)
    tag = get_object_or_404(Tag.objects.select_related("tag_set"), pk=tag_pk)
    action = request.POST.get("action", "")
    try:
        change_tag(ticket, tag, action, agent=request.user, source="dashboard")
    except ValidationError as error:
        problem = " ".join(error.messages)
        if request.htmx:
            # 200: htmx swaps only successful answers; the panel says why nothing changed.
            return HttpResponse(ticket_panel(request, ticket, error=problem))
        messages.error(request, problem)
    else:
        if not request.htmx:
            verb = "Added" if action == TagLabel.Action.ADD else "Removed"
            messages.success(request, f"{verb} the tag {tag.tag_set.name}: {tag.name} on #{ticket.pk}.")
    if request.htmx:
        response = HttpResponse(ticket_panel(request, ticket))
        response["HX-Trigger"] = "history-changed"
        return response
    query = QueueParams.from_query(request.GET).as_query()
    url = reverse("triage:ticket", kwargs={"pk": ticket.pk})
    return HttpResponseRedirect(f"{url}?{query}" if query else url)
