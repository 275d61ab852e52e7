"""Ticket import (CSV or JSONL): idempotent by external id, all rows or none."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.db import transaction

from .importing import ImportReport, RowError, errors_from_validation, iter_rows
from .models import Correction, Ticket
from .services import clean_ticket_fields, record_label
from .work import request_work

TICKET_FIELDS = {"external_id", "subject", "body", "requester", "channel", "team"}


def import_tickets(
    data: bytes,
    fmt: str,
    *,
    route: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import tickets. A row's optional ``team`` is an agent's label for it (stored as a Correction).

    Rows are validated first; with any bad row nothing is written and the report lists every
    problem as (line, field, reason). Rows whose ``external_id`` already exists are left unchanged.
    """
    report = ImportReport()
    rows = list(iter_rows(data, fmt, report.errors))
    cleaned: list[tuple[int, dict]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        unknown = sorted(set(row) - TICKET_FIELDS - {"articles"})
        if unknown:
            report.errors.append(RowError(line, unknown[0], f"unknown field (expected {sorted(TICKET_FIELDS)})"))
            continue
        try:
            fields = clean_ticket_fields(row)
        except ValidationError as exc:
            report.errors.extend(errors_from_validation(line, exc))
            continue
        ext = fields["external_id"]
        if ext:
            if ext in seen:
                report.errors.append(RowError(line, "external_id", f"duplicate of line {seen[ext]} in this file"))
                continue
            seen[ext] = line
        cleaned.append((line, fields))
    if report.errors:
        return report

    existing = set(
        Ticket.objects.filter(external_id__in=[f["external_id"] for _, f in cleaned if f["external_id"]]).values_list(
            "external_id", flat=True
        )
    )
    with transaction.atomic():
        for done, (_line, fields) in enumerate(cleaned, start=1):
            team = fields.pop("team")
            if fields["external_id"] in existing:
                report.unchanged += 1
            else:
                ticket = Ticket.objects.create(**fields)
                if team is not None:
                    record_label(ticket, team, kind=Correction.Kind.IMPORTED, source="import")
                if route:
                    request_work(ticket.pk)
                report.created += 1
            if progress:
                progress(done, len(cleaned))
    return report
