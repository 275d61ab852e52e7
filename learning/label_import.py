"""Import labels of existing tickets from a CSV or JSONL file (the ``import_labels`` command)."""

from __future__ import annotations

from django.db import transaction

from triage.importing import ImportReport, RowError, iter_rows
from triage.models import Correction, Team, Ticket
from triage.services import record_label

LABEL_FIELDS = ("external_id", "team")


def import_labels(data: bytes, fmt: str, *, agent=None) -> ImportReport:
    """Import labels of existing tickets from CSV (header ``external_id,team``) or JSONL.

    ``team`` is a team's slug (or its exact name). Every row is checked first; with any bad row
    nothing is stored and the report lists each problem as (line, field, reason). A row that names
    the team the ticket is already labelled with changes nothing (``unchanged``), so a file can be
    imported twice. Two rows for one ticket are both stored, in file order: the later one wins.

    >>> import_labels(b"external_id,team\\nT-1,billing\\n", "csv").created           # doctest: +SKIP
    1
    """
    report = ImportReport()
    rows = list(iter_rows(data, fmt, report.errors))
    teams = {t.slug: t for t in Team.objects.all()}
    by_name = {t.name.casefold(): t for t in teams.values()}
    wanted = {str(r.get("external_id") or "").strip() for _, r in rows}
    tickets = {t.external_id: t for t in Ticket.objects.filter(external_id__in=wanted - {""})}
    planned: list[tuple[Ticket, Team]] = []
    for line, row in rows:
        unknown = sorted(set(row) - set(LABEL_FIELDS))
        if unknown:
            report.errors.append(RowError(line, unknown[0], f"unknown field (expected {', '.join(LABEL_FIELDS)})"))
            continue
        ext = str(row.get("external_id") or "").strip()
        name = str(row.get("team") or "").strip()
        ticket = tickets.get(ext)
        team = teams.get(name) or by_name.get(name.casefold())
        if not ext:
            report.errors.append(RowError(line, "external_id", "is required"))
        elif ticket is None:
            report.errors.append(RowError(line, "external_id", f"no ticket has external_id {ext!r}"))
        if not name:
            report.errors.append(RowError(line, "team", "is required"))
        elif team is None:
            report.errors.append(RowError(line, "team", f"unknown team {name!r}"))
        elif not team.active:
            report.errors.append(RowError(line, "team", f"team {team.slug!r} is deactivated; it takes no tickets"))
        if ticket is not None and team is not None and team.active:
            planned.append((ticket, team))
    if report.errors:
        return report
    latest = dict(
        Correction.objects.filter(ticket__in=[t for t, _ in planned])
        .latest_per_ticket()
        .values_list("ticket_id", "to_team_id")
    )
    with transaction.atomic():
        for ticket, team in planned:
            if latest.get(ticket.pk) == team.pk:
                report.unchanged += 1
                continue
            record_label(ticket, team, agent=agent, kind=Correction.Kind.IMPORTED, source="import")
            latest[ticket.pk] = team.pk
            report.created += 1
    return report
