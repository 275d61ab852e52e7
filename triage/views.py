"""The agent dashboard: queues, the ticket page with its routing decision and article suggestions, and
the actions agents take there. Server-rendered; htmx refreshes the parts that change while the page is
open (the routing decision, suggestions, history).

Views stay thin: they parse input with a form, call a verb-named function (``triage.services``,
``triage.actions``, ``search.services``) and redirect back to the ticket, carrying the queue the agent
came from so that "next ticket" keeps walking it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from search.models import Suggestion, SuggestionFeedback
from search.services import record_suggestion_feedback, request_suggestions, retract_suggestion_feedback

from . import services
from .actions import assign_ticket, resolve_ticket
from .extensions import QUEUE_FILTER_CHOICES, QUEUE_ROWS, QUEUE_SORTS, TICKET_PANELS
from .forms import ArticleFeedbackForm, CorrectForm, NewTicketForm, ReassignForm, active_teams
from .models import Correction, Prediction, Team, Ticket
from .queues import LABEL_NEXT, QUEUES, QueueParams, label_next_order, neighbour, queue_tickets
from .roles import agent_required

PAGE_SIZE = 25
PENDING = (Ticket.Status.NEW, Ticket.Status.ROUTING)
# After this long a ticket still routing is polled less often and the page says routing is slow.
SLOW_ROUTING = timedelta(seconds=30)
# Suggestions are computed by their own task; the panel waits this long for them before it stops asking.
SUGGESTIONS_WAIT = timedelta(minutes=2)
SORTABLE = [("created", "Created"), ("updated", "Updated"), ("confidence", "Confidence")]


# --- Queues ---------------------------------------------------------------------------------------------


@require_GET
@agent_required
def queue(request: HttpRequest) -> HttpResponse:
    params = QueueParams.from_query(request.GET)
    page = Paginator(queue_tickets(params, request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    for decorate in QUEUE_ROWS:  # what apps above triage show in the rows (tags), one query per page
        decorate(page.object_list)
    counts = _queue_counts(request.user)
    context = {
        "params": params,
        "page": page,
        "title": QUEUES[params.queue],
        "tabs": [
            {
                "name": name,
                "label": label,
                "query": QueueParams(queue=name, team=params.team).as_query(),
                "count": counts.get(name),
                "active": name == params.queue,
            }
            for name, label in QUEUES.items()
        ],
        "teams": active_teams(),
        "tag_choices": QUEUE_FILTER_CHOICES["tag"]() if "tag" in QUEUE_FILTER_CHOICES else [],
        "columns": _columns(params),
        # Registered sorts head the columns their app adds (tags: urgency heads the tags column).
        "extra_columns": _columns(params, [(name, extra.label) for name, extra in QUEUE_SORTS.items()]),
        "pages": [(n, params.as_query(page=str(n))) for n in _page_numbers(page)],
        "previous_query": params.as_query(page=str(page.previous_page_number())) if page.has_previous() else "",
        "next_query": params.as_query(page=str(page.next_page_number())) if page.has_next() else "",
        "queue_query": params.as_query(),
    }
    if request.htmx and request.htmx.target == "queue-results":
        return render(request, "triage/_queue_results.html", context)
    return render(request, "triage/queue.html", context)


def _queue_counts(user) -> dict[str, int]:
    open_ = ~Q(status=Ticket.Status.RESOLVED)
    return Ticket.objects.aggregate(
        open=Count("pk", filter=open_),
        needs_triage=Count("pk", filter=Q(status=Ticket.Status.NEEDS_TRIAGE)),
        mine=Count("pk", filter=open_ & Q(assignee=user)),
    ) | {LABEL_NEXT: len(label_next_order())}


def _columns(params: QueueParams, sortable: list[tuple[str, str]] = SORTABLE) -> list[dict]:
    """Sortable column headers: clicking the active one flips its direction."""
    columns = []
    for name, label in sortable:
        if params.queue == LABEL_NEXT:  # one order only: what teaches most
            columns.append({"name": name, "label": label, "query": "", "direction": ""})
            continue
        active = params.sort.lstrip("-") == name
        sort = ("" if params.descending else "-") + name if active else "-" + name
        columns.append(
            {
                "name": name,
                "label": label,
                "query": params.as_query(sort=sort),
                "direction": ("desc" if params.descending else "asc") if active else "",
            }
        )
    return columns


def _page_numbers(page) -> list[int]:
    numbers = {1, page.paginator.num_pages, *range(max(1, page.number - 2), page.number + 3)}
    return sorted(n for n in numbers if 1 <= n <= page.paginator.num_pages)


# --- Ticket page and its live parts ---------------------------------------------------------------------


@require_GET
@agent_required
def ticket_detail(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket.objects.select_related("team", "assignee", "created_by"), pk=pk)
    params = QueueParams.from_query(request.GET)
    context = {
        **_decision_context(ticket),
        **_suggestions_context(ticket, request.user),
        **_history_context(ticket),
        "params": params,
        "queue_query": params.as_query(),
        # HTML of the panels apps above triage add (tags); each escapes what it renders.
        "panels": [panel(request, ticket) for panel in TICKET_PANELS],
        "reassign_form": ReassignForm(
            initial={"assignee": ticket.assignee_id, "team": ticket.team.slug if ticket.team else None}
        ),
    }
    return render(request, "triage/ticket.html", context)


@require_GET
@agent_required
def ticket_decision(request: HttpRequest, pk: int) -> HttpResponse:
    """The routing decision panel; polled every second while the ticket is still being routed."""
    ticket = get_object_or_404(Ticket.objects.select_related("team", "assignee"), pk=pk)
    context = {**_decision_context(ticket), "queue_query": QueueParams.from_query(request.GET).as_query()}
    response = render(request, "triage/_decision.html", context)
    if request.GET.get("was") == "pending" and not context["pending"]:
        # The other panels (suggestions, history, status) listen for this and reload themselves.
        response["HX-Trigger"] = "ticket-decided"
    return response


@require_GET
@agent_required
def ticket_suggestions(request: HttpRequest, pk: int) -> HttpResponse:
    """The suggestions panel; polled while the first suggestions (or recomputed ones) are on their way."""
    ticket = get_object_or_404(Ticket, pk=pk)
    context = {
        **_suggestions_context(ticket, request.user, since=_since(request)),
        "queue_query": QueueParams.from_query(request.GET).as_query(),
    }
    return render(request, "triage/_suggestions.html", context)


@require_GET
@agent_required
def ticket_history(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket, pk=pk)
    return render(request, "triage/_history.html", _history_context(ticket))


def _since(request: HttpRequest) -> datetime | None:
    """When the agent asked for recomputed suggestions (``?since=<unix time>``), if recently."""
    try:
        since = datetime.fromtimestamp(float(request.GET["since"]), tz=UTC)
    except (KeyError, ValueError, OverflowError, OSError):
        return None
    return since if timedelta(0) <= timezone.now() - since < SUGGESTIONS_WAIT else None


def latest_prediction(ticket: Ticket) -> Prediction | None:
    return ticket.predictions.select_related("model_version", "chosen_team").newest_first().first()


def _decision_context(ticket: Ticket) -> dict:
    prediction = latest_prediction(ticket)
    pending = ticket.status in PENDING
    alternatives = []
    if prediction is not None:
        top = prediction.top(3)
        teams = Team.objects.in_bulk([slug for slug, _ in top], field_name="slug")
        for number, (slug, probability) in enumerate(top, start=1):
            team = teams.get(slug)
            alternatives.append(
                {
                    "number": number,
                    "slug": slug,
                    "team": team,
                    "score": probability,
                    "chosen": team is not None and team.pk == prediction.chosen_team_id,
                    "current": team is not None and team.pk == ticket.team_id,
                    "pickable": team is not None and team.active,
                }
            )
    waiting = timezone.now() - (ticket.routing_started_at or ticket.created_at)
    return {
        "ticket": ticket,
        "prediction": prediction,
        # What "accept" confirms: the team the ticket is in, else the team the router suggested.
        "accept_team": ticket.team or (prediction.chosen_team if prediction is not None else None),
        "alternatives": alternatives,
        "pending": pending,
        "slow": pending and waiting > SLOW_ROUTING,
        "correct_form": CorrectForm(),
    }


def _suggestions_context(ticket: Ticket, user, *, since: datetime | None = None) -> dict:
    suggestions = list(
        Suggestion.objects.filter(ticket=ticket)
        .select_related("article", "passage")
        .prefetch_related(
            Prefetch(
                "article__feedback",
                queryset=SuggestionFeedback.objects.filter(ticket=ticket, agent=user).order_by("-created_at"),
                to_attr="my_feedback",
            )
        )
        .order_by("rank")
    )
    for suggestion in suggestions:
        suggestion.my_mark = suggestion.article.my_feedback[0] if suggestion.article.my_feedback else None
    now = timezone.now()
    refreshing = since is not None and now - since < SUGGESTIONS_WAIT
    if refreshing and suggestions and min(s.created_at for s in suggestions) >= since:
        refreshing = False  # the recomputed suggestions are in
    return {
        "ticket": ticket,
        "suggestions": suggestions,
        # Below the relevance cutoff a suggestion is not shown; with none above, "no article fits".
        "fitting": [s for s in suggestions if s.fits],
        "suggestions_waiting": not suggestions and now - ticket.created_at < SUGGESTIONS_WAIT,
        "refreshing_since": since.timestamp() if refreshing else None,
    }


def _history_context(ticket: Ticket) -> dict:
    """Everything people and models decided about the ticket, newest first."""
    events = []
    for correction in Correction.objects.filter(ticket=ticket).select_related(
        "agent", "from_team", "to_team", "model_version"
    ):
        events.append({"kind": "label", "at": correction.created_at, "item": correction})
    for mark in SuggestionFeedback.objects.filter(ticket=ticket).select_related("agent", "article"):
        events.append({"kind": "feedback", "at": mark.created_at, "item": mark})
    for prediction in Prediction.objects.filter(ticket=ticket).select_related("model_version", "chosen_team"):
        events.append({"kind": "prediction", "at": prediction.created_at, "item": prediction})
    events.append({"kind": "created", "at": ticket.created_at, "item": ticket})
    if ticket.resolved_at:
        events.append({"kind": "resolved", "at": ticket.resolved_at, "item": ticket})
    events.sort(key=lambda event: event["at"], reverse=True)
    return {"ticket": ticket, "events": events}


# --- New ticket -----------------------------------------------------------------------------------------


@agent_required
def new_ticket(request: HttpRequest) -> HttpResponse:
    form = NewTicketForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            ticket, _ = services.create_ticket(form.cleaned_data, created_by=request.user)
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            return redirect("triage:ticket", pk=ticket.pk)
    return render(request, "triage/new_ticket.html", {"form": form})


# --- Actions on a ticket --------------------------------------------------------------------------------


@require_POST
@agent_required
def accept(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket, pk=pk)
    try:
        label = services.accept_routing(ticket, agent=request.user, source="dashboard")
    except ValidationError as error:
        return _refused(request, ticket, error)
    messages.success(request, f"Accepted the routing of #{ticket.pk} to {label.to_team.name}.")
    return _after_action(request, ticket)


@require_POST
@agent_required
def correct(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket, pk=pk)
    form = CorrectForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an active team to route this ticket to.")
        return _back(request, ticket)
    team = form.cleaned_data["team"]
    try:
        # Naming the team the ticket is already in is stored as an acceptance (correct_routing decides).
        label = services.correct_routing(ticket, team, agent=request.user, source="dashboard")
    except ValidationError as error:
        return _refused(request, ticket, error)
    if label.kind == Correction.Kind.ACCEPTED:
        messages.success(request, f"Accepted the routing of #{ticket.pk} to {team.name}.")
    else:
        messages.success(request, f"Corrected #{ticket.pk}: routed to {team.name}.")
    return _after_action(request, ticket)


@require_POST
@agent_required
def reassign(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket, pk=pk)
    form = ReassignForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an agent and/or a team from the lists.")
        return _back(request, ticket)
    try:
        assign_ticket(
            ticket, assignee=form.cleaned_data["assignee"], team=form.cleaned_data["team"], agent=request.user
        )
    except ValidationError as error:
        return _refused(request, ticket, error)
    messages.success(request, f"Reassigned #{ticket.pk}.")
    return _after_action(request, ticket)


@require_POST
@agent_required
def take(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket, pk=pk)
    assign_ticket(ticket, assignee=request.user, agent=request.user)
    messages.success(request, f"#{ticket.pk} is assigned to you.")
    return _after_action(request, ticket)


@require_POST
@agent_required
def resolve(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = get_object_or_404(Ticket, pk=pk)
    resolve_ticket(ticket)
    messages.success(request, f"Resolved #{ticket.pk}.")
    return _after_action(request, ticket)


@require_POST
@agent_required
def article_feedback(request: HttpRequest, pk: int, suggestion_pk: int) -> HttpResponse:
    suggestion = get_object_or_404(
        Suggestion.objects.select_related("article", "passage", "ticket"), pk=suggestion_pk, ticket_id=pk
    )
    form = ArticleFeedbackForm(request.POST)
    if not form.is_valid():
        return HttpResponse("helpful must be yes or no", status=400)
    suggestion.my_mark = record_suggestion_feedback(
        suggestion.ticket, suggestion.article, helpful=form.cleaned_data["helpful"], agent=request.user
    )
    verdict = "helpful" if form.cleaned_data["helpful"] else "not helpful"
    return _suggestion_answer(request, suggestion, f"Marked “{suggestion.article.title}” as {verdict}.")


@require_POST
@agent_required
def retract_article_feedback(request: HttpRequest, pk: int, suggestion_pk: int) -> HttpResponse:
    """Withdraw the agent's mark on a suggested article (and the question it taught the search)."""
    suggestion = get_object_or_404(
        Suggestion.objects.select_related("article", "passage", "ticket"), pk=suggestion_pk, ticket_id=pk
    )
    retract_suggestion_feedback(suggestion.ticket, suggestion.article, agent=request.user)
    suggestion.my_mark = None
    return _suggestion_answer(request, suggestion, f"Withdrew your mark on “{suggestion.article.title}”.")


def _suggestion_answer(request: HttpRequest, suggestion: Suggestion, message: str) -> HttpResponse:
    """After a mark or its withdrawal: the suggestion again (htmx), else back to the ticket with ``message``."""
    if request.htmx:
        response = render(
            request,
            "triage/_suggestion.html",
            {
                "ticket": suggestion.ticket,
                "suggestion": suggestion,
                "queue_query": QueueParams.from_query(request.GET).as_query(),
            },
        )
        response["HX-Trigger"] = "history-changed"
        return response
    messages.success(request, message)
    return _back(request, suggestion.ticket)


@require_POST
@agent_required
def refresh_suggestions(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask the workers to recompute the suggestions; the panel polls until the new ones are stored."""
    ticket = get_object_or_404(Ticket, pk=pk)
    since = timezone.now()
    request_suggestions(ticket.pk)
    if request.htmx:
        context = {
            **_suggestions_context(ticket, request.user, since=since),
            "queue_query": QueueParams.from_query(request.GET).as_query(),
        }
        return render(request, "triage/_suggestions.html", context)
    messages.info(request, "Recomputing the article suggestions…")
    return _back(request, ticket)


# --- Moving through a queue -----------------------------------------------------------------------------


@require_GET
@agent_required
def step(request: HttpRequest, pk: int, direction: str) -> HttpResponse:
    """Open the next (or previous) ticket of the queue the agent came from."""
    ticket = get_object_or_404(Ticket, pk=pk)
    params = QueueParams.from_query(request.GET)
    found = neighbour(params, request.user, ticket, forward=direction == "next")
    if found is None:
        messages.info(request, f"That was the {'last' if direction == 'next' else 'first'} ticket in this queue.")
        return _back(request, ticket)
    return HttpResponseRedirect(_ticket_url(found, params.as_query()))


def _ticket_url(ticket: Ticket, query: str) -> str:
    url = reverse("triage:ticket", kwargs={"pk": ticket.pk})
    return f"{url}?{query}" if query else url


def _back(request: HttpRequest, ticket: Ticket) -> HttpResponse:
    return HttpResponseRedirect(_ticket_url(ticket, QueueParams.from_query(request.GET).as_query()))


def _refused(request: HttpRequest, ticket: Ticket, error: ValidationError) -> HttpResponse:
    """Back to the ticket, saying why the service refused the action."""
    messages.error(request, " ".join(error.messages))
    return _back(request, ticket)


def _after_action(request: HttpRequest, ticket: Ticket) -> HttpResponse:
    """Back to the ticket, or on to the next one in the queue ("accept and next")."""
    if request.POST.get("then") == "next":
        params = QueueParams.from_query(request.GET)
        found = neighbour(params, request.user, ticket, forward=True)
        if found is not None:
            return HttpResponseRedirect(_ticket_url(found, params.as_query()))
        messages.info(request, "That was the last ticket in this queue.")
        return HttpResponseRedirect(f"{reverse('triage:queue')}?{params.as_query()}")
    return _back(request, ticket)
