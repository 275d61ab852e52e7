"""Plug-in points for the apps above triage (``tags``): triage never imports them (docs/architecture.md).

An app registers here from its ``AppConfig.ready``; the queue and the ticket page then ask what is
registered. With nothing registered the dashboard is what it was.

- ``QUEUE_FILTERS[name]``: narrows a queue by the query parameter ``name`` (e.g. ``tag=urgency/high``).
- ``QUEUE_FILTER_CHOICES[name]``: the ``(value, label)`` options the queue page offers for that filter.
- ``QUEUE_SORTS[name]``: a sort column; ``annotate`` adds an annotation called ``name`` to order by.
- ``QUEUE_ROWS``: called once with the tickets of a queue page, to attach what the rows show (one
  query for the page, not one per row).
- ``TICKET_PANELS``: render HTML panels for the side of the ticket page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet


@dataclass(frozen=True)
class QueueSort:
    label: str
    annotate: Callable[[QuerySet], QuerySet]


QUEUE_FILTERS: dict[str, Callable[[QuerySet, str], QuerySet]] = {}
QUEUE_FILTER_CHOICES: dict[str, Callable[[], list[tuple[str, str]]]] = {}
QUEUE_SORTS: dict[str, QueueSort] = {}
QUEUE_ROWS: list[Callable[[Sequence[Any]], None]] = []
TICKET_PANELS: list[Callable[[Any, Any], str]] = []
