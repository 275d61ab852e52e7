"""The ticket list and detail as plain dicts built from ``.values()`` rows: the read path of the API.

They answer exactly what ``TicketSerializer`` and ``TicketDetailSerializer`` would (same keys in the
same order, same values; ``tests/api/test_reads.py`` compares the two on a realistic help desk), for
a fraction of the CPU: DRF builds every nested serializer's fields anew for each request (~4 ms on a
detail) and walks each model instance field by field, and a list page of 50 tickets with 15 tags each
was ~37 ms of CPU in process, a detail ~22 ms (``bench/README.md``). The serializers stay what the
schema is generated from and what writes answer with.

Queries: a list page is the count, the page and its tags (one query); a detail is the ticket, its
latest prediction, its suggestions, its labels and its tags: none per row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import BooleanField, CharField, F, FloatField, Lookup, OuterRef, QuerySet, Subquery, Value
from django.utils import timezone

from search.models import Suggestion
from tags.dashboard import shown_as_set
from tags.models import TagLabel, TagPrediction
from triage.models import Correction, Prediction, Ticket, best_teams

from .serializers import TicketSerializer

# The ticket's own columns as the serializer lists them, and what its team and decision are read from.
TICKET_COLUMNS = (
    *(name for name in TicketSerializer.Meta.fields if name not in ("team", "decision", "tags")),
    *("team_id", "team__slug", "team__name", "latest_decision"),
)
PREDICTION_COLUMNS = (
    "id",
    "decision",
    "chosen_team_id",
    "chosen_team__slug",
    "chosen_team__name",
    "confidence",
    "threshold",
    "scores",
    "scorer",
    "model_version_id",
    "model_version__scorer",
    "model_version__version",
    "latency_ms",
    "created_at",
)
# The passage's text only, not its row (which carries a 384-float embedding).
SUGGESTION_COLUMNS = (
    "rank",
    "score",
    "article_id",
    "article__title",
    "article__url",
    "passage_id",
    "passage_text",
    "passage__text",
)
LABEL_COLUMNS = (
    "id",
    "kind",
    *(f"{team}{name}" for team in ("from_team", "to_team") for name in ("_id", "__slug", "__name")),
    "to_team_slug",
    "agent__username",
    "source",
    "created_at",
)
# The columns of a tag row, predictions and labels alike; the set filter is the dashboard's "shown
# tags" (current tags of active sets, ``tags.dashboard.tag_states``).
TAG_COLUMNS = ("ticket_id", "tag_id", "tag__tag_set__slug", "tag__slug", "tag__name")
SHOWN_TAGS = {"tag__archived_at__isnull": True, "tag__tag_set__active": True}


class AnyOf(Lookup):
    """``column = ANY(%s)`` with the values as one array, for ``filter(AnyOf(F("column"), ids))``:
    ``__in`` makes a parameter of each, and Django and psycopg spend ~20 us on each (a page's tags
    name its 50 tickets twice: ~2 ms), and psycopg caches no query of more than 50 parameters."""

    lookup_name = "any_of"
    prepare_rhs = False

    def get_db_prep_lookup(self, value, connection):
        return "%s", [list(value)]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", (*lhs_params, *rhs_params)


class CompiledRead:
    """A read query that the ORM compiles once per process and that runs again with another key.

    Compiling a query is Python work (resolving names, joins, ordering; ~1 ms of CPU for a detail's
    simple ones, ~3 ms for the tags' union), more than Postgres takes to answer it, and a detail made
    five of them for every request. ``build(key)`` returns the queryset for one key; it is built once
    with ``sample`` and every parameter of its SQL must be that sample (checked), so that a request only
    sends the same SQL with its own key in their place. Rows come back through the fields' own
    converters (a JSON column is decoded as the ORM would), as tuples in the SQL's column order or as
    dicts named as ``values()`` names them.
    """

    def __init__(self, build: Callable[[Any], QuerySet], sample: Any) -> None:
        self._build, self._sample = build, sample
        self._compiled: tuple[str, int, list[str], dict] | None = None

    def _compile(self) -> tuple[str, int, list[str], dict]:
        queryset = self._build(self._sample)
        query = queryset.query
        compiler = query.get_compiler(queryset.db)
        sql, params = compiler.as_sql()
        if not params or any(param != self._sample for param in params):
            raise ImproperlyConfigured(f"Every parameter of a compiled read must be its key: {params!r}")
        names = [*query.extra_select, *query.values_select, *query.annotation_select]
        converters = compiler.get_converters([column[0] for column in compiler.select[: compiler.col_count]])
        return sql, len(params), names, converters

    def tuples(self, key: Any) -> list[tuple]:
        if self._compiled is None:
            self._compiled = self._compile()  # two threads may both compile it; either answer is the same
        sql, n_params, _names, converters = self._compiled
        with connection.cursor() as cursor:
            cursor.execute(sql, [key] * n_params)
            rows = cursor.fetchall()
        if not converters:
            return rows
        converted = []
        for row in rows:
            row = list(row)
            for position, (functions, expression) in converters.items():
                value = row[position]
                for function in functions:
                    value = function(value, expression, connection)
                row[position] = value
            converted.append(tuple(row))
        return converted

    def dicts(self, key: Any) -> list[dict[str, Any]]:
        rows = self.tuples(key)
        names = self._compiled[2]
        return [dict(zip(names, row, strict=True)) for row in rows]


def _when(value: datetime | None, zone: tzinfo) -> str | None:
    """A date-time as DRF's ``DateTimeField`` writes it: ISO 8601 in the current time zone, "Z" for UTC.
    Its own ``to_representation`` costs ~10 times this (time-zone checks meant for naive input); a page
    shows 150 of them. Rows are aware (``USE_TZ``), which ``test_reads`` compares with DRF's answer.
    ``zone`` is ``timezone.get_current_timezone()``, read once per answer (a context-local look-up)."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _team(pk: int | None, slug: str, name: str) -> dict[str, Any] | None:
    return None if pk is None else {"id": pk, "slug": slug, "name": name}


def latest_decision() -> Subquery:
    """The decision of a ticket's latest routing, for ``annotate(latest_decision=...)``."""
    return Subquery(Prediction.objects.filter(ticket=OuterRef("pk")).newest_first().values("decision")[:1])


def ticket_values() -> QuerySet:
    """Tickets, newest first, as rows of ``TICKET_COLUMNS`` (with the latest routing decision)."""
    return (
        Ticket.objects.annotate(latest_decision=latest_decision())
        .order_by("-created_at", "-pk")
        .values(*TICKET_COLUMNS)
    )


def ticket_list(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page of ``ticket_values()`` rows as ``TicketSerializer(many=True)`` shows them."""
    tags, zone = ticket_tags(row["id"] for row in rows), timezone.get_current_timezone()
    return [_ticket(row, tags[row["id"]], zone) for row in rows]


# What a detail reads, each compiled once (``CompiledRead``); the key is the ticket's id.
_TICKET = CompiledRead(lambda pk: ticket_values().filter(pk=pk)[:1], sample=-1)
_PREDICTION = CompiledRead(
    lambda pk: Prediction.objects.filter(ticket_id=pk).newest_first().values(*PREDICTION_COLUMNS)[:1], sample=-1
)
_SUGGESTIONS = CompiledRead(
    lambda pk: Suggestion.objects.filter(ticket_id=pk).order_by("rank", "pk").values(*SUGGESTION_COLUMNS), sample=-1
)
_LABELS = CompiledRead(
    lambda pk: Correction.objects.filter(ticket_id=pk).order_by("-created_at", "-pk").values(*LABEL_COLUMNS),
    sample=-1,
)
BIGINT_MAX = 2**63 - 1


def ticket_row(pk: int) -> dict[str, Any] | None:
    """The ``ticket_values()`` row of one ticket, or None."""
    if not 0 < pk <= BIGINT_MAX:
        return None
    rows = _TICKET.dicts(pk)
    return rows[0] if rows else None


def ticket_detail(row: dict[str, Any]) -> dict[str, Any]:
    """One ``ticket_values()`` row as ``TicketDetailSerializer`` shows it."""
    pk, zone = row["id"], timezone.get_current_timezone()
    answer = _ticket(row, ticket_tags([pk])[pk], zone)
    predictions = _PREDICTION.dicts(pk)
    answer["prediction"] = _prediction(predictions[0], zone) if predictions else None
    answer["suggestions"] = [_suggestion(s) for s in _SUGGESTIONS.dicts(pk)]
    answer["labels"] = [_label(label, zone) for label in _LABELS.dicts(pk)]
    return answer


def _ticket(row: dict[str, Any], tags: list[dict[str, Any]], zone: tzinfo) -> dict[str, Any]:
    return {
        "id": row["id"],
        "external_id": row["external_id"],
        "subject": row["subject"],
        "body": row["body"],
        "requester": row["requester"],
        "channel": row["channel"],
        "status": row["status"],
        "team": _team(row["team_id"], row["team__slug"], row["team__name"]),
        "decision": row["latest_decision"],
        "tags": tags,
        "created_at": _when(row["created_at"], zone),
        "updated_at": _when(row["updated_at"], zone),
        "resolved_at": _when(row["resolved_at"], zone),
    }


def _prediction(row: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
    return {
        "id": row["id"],
        "decision": row["decision"],
        "chosen_team": _team(row["chosen_team_id"], row["chosen_team__slug"], row["chosen_team__name"]),
        "confidence": row["confidence"],
        "threshold": row["threshold"],
        "scores": row["scores"],
        "top": [{"team": slug, "score": score} for slug, score in best_teams(row["scores"], 3)],
        "scorer": row["scorer"],
        "model_version": {
            "id": row["model_version_id"],
            "scorer": row["model_version__scorer"],
            "version": row["model_version__version"],
        },
        "latency_ms": row["latency_ms"],
        "created_at": _when(row["created_at"], zone),
    }


def _suggestion(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "rank": row["rank"],
        "score": row["score"],
        "article": {"id": row["article_id"], "title": row["article__title"], "url": row["article__url"]},
        "passage": row["passage_text"] or (row["passage__text"] if row["passage_id"] else None),
    }


def _label(row: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "from_team": _team(row["from_team_id"], row["from_team__slug"], row["from_team__name"]),
        "to_team": _team(row["to_team_id"], row["to_team__slug"], row["to_team__name"]),
        "to_team_slug": row["to_team_slug"],
        "agent": row["agent__username"],
        "source": row["source"],
        "created_at": _when(row["created_at"], zone),
    }


def _tags_query(ids: list[int]) -> QuerySet:
    # Predictions and labels in one answer (UNION ALL), told apart by the action: NULL for a prediction.
    no_action = Value(None, output_field=CharField())
    no_probability, no_set = Value(None, output_field=FloatField()), Value(None, output_field=BooleanField())
    predictions = (
        TagPrediction.objects.filter(AnyOf(F("ticket_id"), ids), **SHOWN_TAGS)
        .latest_per_ticket_and_tag()
        .values_list(*TAG_COLUMNS, "probability", "is_set", no_action)
    )
    labels = (
        TagLabel.objects.filter(AnyOf(F("ticket_id"), ids), **SHOWN_TAGS)
        .latest_per_ticket_and_tag()
        .values_list(*TAG_COLUMNS, no_probability, no_set, "action")
    )
    return predictions.union(labels, all=True)


_TAGS = CompiledRead(_tags_query, sample=[-1])


def ticket_tags(ticket_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """Each ticket's tags as the API shows them (``tags.dashboard.serialize_states`` of ``tag_states``),
    in one query: the latest prediction and the latest label of each shown tag, with the tag's names."""
    ids = list(ticket_ids)
    found: dict[int, dict[int, list]] = {pk: {} for pk in ids}
    if not ids:
        return {}
    for ticket_id, tag_id, set_slug, slug, name, probability, predicted, action in _TAGS.tuples(ids):
        state = found[ticket_id].get(tag_id)
        if state is None:
            state = found[ticket_id][tag_id] = [set_slug, slug, name, None, False, None]
        if action is None:  # a prediction (a label always has its action)
            state[3], state[4] = probability, predicted
        else:
            state[5] = action
    return {
        ticket_id: [
            {
                "tag": f"{set_slug}/{slug}",
                "tag_set": set_slug,
                "name": name,
                "probability": probability,
                "is_set": shown_as_set(label, predicted),
                "by_agent": label is not None,
            }
            for set_slug, slug, name, probability, predicted, label in sorted(states.values(), key=_tag_order)
        ]
        for ticket_id, states in found.items()
    }


def _tag_order(state: list) -> tuple[str, str]:
    return state[0], state[1]
