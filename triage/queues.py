"""The agent queues: which tickets a queue holds, in what order, and which ticket comes next.

A queue is described by a ``QueueParams`` (queue name, team, search text, sort). The dashboard carries
those parameters from the queue list to each ticket page so that "next ticket" walks the same list the
agent was looking at, even after the current ticket has left it (accepted tickets leave "needs triage").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db.models import Case, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When

from mlops.active import queue_order

from .extensions import QUEUE_FILTERS, QUEUE_SORTS
from .models import Correction, Prediction, Ticket

# The same expression as the ``ticket_fulltext`` GIN index on Ticket: a query must repeat it exactly
# for Postgres to use the index.
TICKET_SEARCH_VECTOR = SearchVector("subject", "body", config="english")

QUEUES = {
    "open": "All open",
    "needs_triage": "Needs triage",
    "label_next": "Label next",
    "mine": "Mine",
    "resolved": "Resolved",
    "all": "All",
}
DEFAULT_QUEUE = "open"

# Sort name -> annotation or field it orders by. "-name" is descending.
SORT_FIELDS = {
    "created": "created_at",
    "updated": "updated_at",
    "confidence": "confidence",
    "relevance": "rank",
    "position": "position",  # Label next only: the order in which a label teaches most
}
DEFAULT_SORT = "-created"
LABEL_NEXT = "label_next"
LABEL_NEXT_SORT = "position"
# Label next ranks the newest unlabelled open tickets that have a routing decision: a bound on the work
# per page view (one query for their latest predictions, then numpy), and old tickets teach less.
LABEL_NEXT_POOL = 2000
DEFAULT_SEARCH_SORT = "-relevance"
_TICKET_NUMBER = re.compile(r"^#?(\d{1,12})$")


@dataclass(frozen=True)
class QueueParams:
    """What the agent chose on the queue page. Unknown or malformed values fall back to defaults."""

    queue: str = DEFAULT_QUEUE
    team: str = ""
    q: str = ""
    sort: str = DEFAULT_SORT
    # A filter an app above triage registered (``triage.extensions``): ``tag=urgency/high``.
    tag: str = ""

    @classmethod
    def from_query(cls, query) -> QueueParams:
        queue = query.get("queue") or DEFAULT_QUEUE
        if queue not in QUEUES:
            queue = DEFAULT_QUEUE
        team = (query.get("team") or "").strip()[:64]
        q = (query.get("q") or "").strip()[:200]
        sort = query.get("sort") or (DEFAULT_SEARCH_SORT if q else DEFAULT_SORT)
        tag = (query.get("tag") or "").strip()[:130] if "tag" in QUEUE_FILTERS else ""
        if sort.lstrip("-") not in (SORT_FIELDS.keys() | QUEUE_SORTS.keys()) or (
            sort.lstrip("-") == "relevance" and not q
        ):
            sort = DEFAULT_SEARCH_SORT if q else DEFAULT_SORT
        if (queue == LABEL_NEXT) != (sort == LABEL_NEXT_SORT):
            # Label next has one order (what teaches most); the other queues cannot use it.
            sort = LABEL_NEXT_SORT if queue == LABEL_NEXT else (DEFAULT_SEARCH_SORT if q else DEFAULT_SORT)
        return cls(queue=queue, team=team, q=q, sort=sort, tag=tag)

    @property
    def sort_field(self) -> str:
        name = self.sort.lstrip("-")
        return SORT_FIELDS.get(name, name)  # a registered sort orders by the annotation of its name

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    def as_query(self, **overrides: str) -> str:
        """URL query string of these parameters (defaults left out), e.g. ``queue=mine&sort=-updated``."""
        values = {"queue": self.queue, "team": self.team, "q": self.q, "tag": self.tag, "sort": self.sort}
        values |= overrides
        default_sort = (
            LABEL_NEXT_SORT if values["queue"] == LABEL_NEXT else DEFAULT_SEARCH_SORT if values["q"] else DEFAULT_SORT
        )
        defaults = {"queue": DEFAULT_QUEUE, "team": "", "q": "", "tag": "", "sort": default_sort}
        return urlencode({k: v for k, v in values.items() if v and v != defaults.get(k)})


def with_latest_prediction(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    """Annotate each ticket with its latest routing decision's ``confidence`` and ``decision``."""
    latest = Prediction.objects.filter(ticket=OuterRef("pk")).newest_first()
    return tickets.annotate(
        confidence=Subquery(latest.values("confidence")[:1]),
        decision=Subquery(latest.values("decision")[:1]),
    )


def queue_tickets(params: QueueParams, user) -> QuerySet[Ticket]:
    """The tickets of a queue, annotated and ordered, ready to paginate."""
    tickets = Ticket.objects.select_related("team", "assignee")
    if params.queue == "open":
        tickets = tickets.exclude(status=Ticket.Status.RESOLVED)
    elif params.queue == "needs_triage":
        tickets = tickets.filter(status=Ticket.Status.NEEDS_TRIAGE)
    elif params.queue == "mine":
        tickets = tickets.filter(assignee=user).exclude(status=Ticket.Status.RESOLVED)
    elif params.queue == "resolved":
        tickets = tickets.filter(status=Ticket.Status.RESOLVED)
    elif params.queue == LABEL_NEXT:
        order = label_next_order(team=params.team)
        tickets = tickets.filter(pk__in=order).annotate(position=_positions(order))
    if params.team and params.queue != LABEL_NEXT:  # there, the team is the predicted one (label_next_order)
        tickets = tickets.filter(team__slug=params.team)
    if params.tag:
        tickets = QUEUE_FILTERS["tag"](tickets, params.tag)
    tickets = _annotate(tickets, params)
    if params.q:
        tickets = _search(tickets, params.q)
    return tickets.order_by(*_ordering(params))


def _annotate(tickets: QuerySet[Ticket], params: QueueParams) -> QuerySet[Ticket]:
    """The latest routing decision, and the value a registered sort orders by."""
    tickets = with_latest_prediction(tickets)
    extra = QUEUE_SORTS.get(params.sort.lstrip("-"))
    return extra.annotate(tickets) if extra is not None else tickets


def label_next_order(*, team: str = "", pool: int = LABEL_NEXT_POOL) -> list[int]:
    """Unlabelled open tickets, most instructive first: ids in the order of the Label next queue.

    Candidates are the ``pool`` newest open tickets without a label whose latest routing decision
    has scores. Uncertain and diverse first (``mlops.active.queue_order``): among the tickets with
    the smallest margin between the top two teams, one per group of tickets the router is torn about
    in the same way, one per predicted team in turn, so that neither a team nor ten copies of one
    confusion fill the queue. ``team`` keeps the tickets whose top predicted team it is.
    """
    candidates = (
        Ticket.objects.exclude(status=Ticket.Status.RESOLVED)
        .filter(Exists(Prediction.objects.filter(ticket=OuterRef("pk"))))
        .exclude(Exists(Correction.objects.filter(ticket=OuterRef("pk"))))
        .order_by("-created_at", "-pk")
        .values("pk")[:pool]
    )
    latest = Prediction.objects.filter(ticket__in=candidates).latest_per_ticket().values_list("ticket_id", "scores")
    ids: list[int] = []
    tops: list[str] = []
    rows: list[dict[str, float]] = []
    for ticket_id, scores in latest:
        if not isinstance(scores, dict) or not scores:
            continue  # a decision without scores (none are stored so, but the JSON is not checked)
        row = {slug: float(value) for slug, value in scores.items()}
        top = max(row, key=row.__getitem__)
        if team and top != team:
            continue
        ids.append(ticket_id)
        tops.append(top)
        rows.append(row)
    if not ids:
        return []
    slugs = sorted({slug for row in rows for slug in row})
    probabilities = np.array([[row.get(slug, 0.0) for slug in slugs] for row in rows])
    return [ids[i] for i in queue_order(probabilities, tops)]


def _positions(order: list[int]):
    if not order:
        return Value(0, output_field=IntegerField())
    return Case(*(When(pk=pk, then=Value(i)) for i, pk in enumerate(order)), output_field=IntegerField())


def _search(tickets: QuerySet[Ticket], text: str) -> QuerySet[Ticket]:
    query = SearchQuery(text, config="english", search_type="websearch")
    tickets = tickets.annotate(search=TICKET_SEARCH_VECTOR, rank=SearchRank(TICKET_SEARCH_VECTOR, query))
    matches = Q(search=query)
    number = _TICKET_NUMBER.match(text)
    if number:
        # Agents paste ticket numbers ("#1234") into the search box.
        matches |= Q(pk=int(number.group(1)))
    return tickets.filter(matches)


def _ordering(params: QueueParams, *, reverse: bool = False) -> list:
    descending = params.descending != reverse
    # Nulls (tickets without a decision yet) come last in the list; walking backwards meets them first.
    expression = F(params.sort_field)
    if descending:
        primary = expression.desc(nulls_last=True) if not reverse else expression.desc(nulls_first=True)
    else:
        primary = expression.asc(nulls_last=True) if not reverse else expression.asc(nulls_first=True)
    return [primary, "-pk" if descending else "pk"]


def neighbour(params: QueueParams, user, ticket: Ticket, *, forward: bool = True) -> Ticket | None:
    """The ticket after (or before) ``ticket`` in the queue ``params`` describes.

    Works by keyset on the sort value and the id, so it also finds the next ticket when ``ticket``
    itself has just left the queue (accepted, resolved, reassigned).
    """
    tickets = queue_tickets(params, user)
    if params.queue == LABEL_NEXT:
        return _label_next_neighbour(tickets, ticket, forward=forward)
    name = params.sort_field
    anchor = _annotate(Ticket.objects.filter(pk=ticket.pk), params)
    if name == "rank":
        anchor = _search(anchor, params.q)
    if not anchor.exists():
        # The current ticket does not match the search it came from: start at the top of the list.
        return (tickets if forward else tickets.order_by(*_ordering(params, reverse=True))).first()
    value = anchor.values_list(name, flat=True).first()
    later = "lt" if params.descending else "gt"
    earlier = "gt" if params.descending else "lt"
    if forward:
        if value is None:
            condition = Q(**{f"{name}__isnull": True, f"pk__{later}": ticket.pk})
        else:
            condition = (
                Q(**{f"{name}__{later}": value})
                | Q(**{name: value, f"pk__{later}": ticket.pk})
                | Q(**{f"{name}__isnull": True})
            )
        return tickets.filter(condition).first()
    if value is None:
        condition = Q(**{f"{name}__isnull": False}) | Q(**{f"{name}__isnull": True, f"pk__{earlier}": ticket.pk})
    else:
        condition = Q(**{f"{name}__{earlier}": value}) | Q(**{name: value, f"pk__{earlier}": ticket.pk})
    return tickets.filter(condition).order_by(*_ordering(params, reverse=True)).first()


def _label_next_neighbour(tickets: QuerySet[Ticket], ticket: Ticket, *, forward: bool) -> Ticket | None:
    # The order is computed, not a column: walk the list of ids. A ticket just labelled has left the
    # queue, and the one that now teaches most is at its head.
    ids = list(tickets.values_list("pk", flat=True))
    if ticket.pk not in ids:
        target = 0 if forward else len(ids) - 1
    else:
        target = ids.index(ticket.pk) + (1 if forward else -1)
    return tickets.filter(pk=ids[target]).first() if 0 <= target < len(ids) else None
