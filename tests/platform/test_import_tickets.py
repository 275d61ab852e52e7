from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from triage.importers import import_tickets
from triage.importing import CSV_FIELD_MAX, ImportFileError
from triage.models import Correction, Team, Ticket
from triage.services import create_ticket


@pytest.fixture
def billing(db) -> Team:
    return Team.objects.create(slug="billing", name="Billing", description="Charges and invoices")


def _jsonl(*rows) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def test_it_imports_jsonl_once_and_skips_known_external_ids(billing):
    data = _jsonl(
        {"external_id": "t-1", "subject": "Charged twice", "body": "I was billed twice", "team": "billing"},
        {"external_id": "t-2", "subject": "Login", "body": "Cannot sign in", "channel": "chat"},
    )
    first = import_tickets(data, "jsonl", route=False)
    second = import_tickets(data, "jsonl", route=False)
    assert (first.created, first.unchanged, first.errors) == (2, 0, [])
    assert (second.created, second.unchanged) == (0, 2)
    assert Ticket.objects.count() == 2
    label = Correction.objects.get()
    assert (label.ticket.external_id, label.to_team_slug, label.kind) == ("t-1", "billing", "imported")


def test_it_reports_every_bad_row_with_line_and_field_and_stores_nothing(billing):
    lines = [
        json.dumps({"external_id": "ok-1", "subject": "fine", "body": "a real ticket"}),
        json.dumps({"external_id": "e-1", "subject": "empty", "body": "   "}),
        json.dumps({"external_id": "e-2", "subject": "x" * 301, "body": "long subject"}),
        json.dumps({"external_id": "e-3", "body": "wrong team", "team": "nope"}),
        "{not json",
        json.dumps({"external_id": "ok-1", "body": "duplicate id in file"}),
    ]
    data = "\n".join(lines).encode() + b"\n" + b'{"body": "caf\xe9 latin-1"}'
    report = import_tickets(data, "jsonl", route=False)
    got = {(e.line, e.field) for e in report.errors}
    assert got == {(2, "body"), (3, "subject"), (4, "team"), (5, "row"), (6, "external_id"), (7, "row")}
    reasons = " ".join(e.reason for e in report.errors)
    assert "required" in reasons and "limit is 300" in reasons and "unknown team" in reasons
    assert "UTF-8" in reasons
    assert Ticket.objects.count() == 0
    assert Correction.objects.count() == 0


def test_csv_in_another_encoding_is_refused_with_the_line(db):
    data = "subject,body\nok,fine\nbad,caf\xe9\n".encode("latin-1")
    with pytest.raises(ImportFileError, match="line 3: not valid UTF-8"):
        import_tickets(data, "csv", route=False)


def test_binary_files_are_refused(db):
    with pytest.raises(ImportFileError, match="binary"):
        import_tickets(b"\x89PNG\r\n\x1a\n\x00\x00\x00", "jsonl", route=False)


def test_csv_rows_with_extra_values_are_reported(db):
    report = import_tickets(b"subject,body\na,b,c\n", "csv", route=False)
    assert [(e.line, e.field) for e in report.errors] == [(2, "row")]


def test_the_command_fails_loudly_and_imports_nothing(tmp_path, db):
    path = tmp_path / "tickets.jsonl"
    path.write_bytes(_jsonl({"body": "good"}, {"body": ""}))
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_tickets", str(path), "--no-route")
    assert Ticket.objects.count() == 0


def test_create_ticket_refuses_control_characters_and_unknown_fields_types(db):
    with pytest.raises(ValidationError) as exc:
        create_ticket({"subject": "nul\x00byte", "body": 42, "channel": "fax"}, route=False)
    assert set(exc.value.message_dict) == {"subject", "body", "channel"}
    assert Ticket.objects.count() == 0


def test_a_ticket_without_subject_takes_its_first_line(db):
    ticket, created = create_ticket({"body": "  App crashes on start\nsince the update"}, route=False)
    assert created and ticket.subject == "App crashes on start"


# --- Oversized CSV fields: Python's csv reader stops at 131,072 characters with a bare _csv.Error ----------


def oversized_csv(tmp_path, header: str, rows: list[str]):
    path = tmp_path / "import.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_a_csv_field_over_the_reader_limit_is_a_row_error_in_the_report_and_the_json(tmp_path, billing):
    huge = "x" * (CSV_FIELD_MAX + 1)
    path = oversized_csv(
        tmp_path,
        "external_id,subject,body",
        ["t-1,fine,a real ticket", f"t-2,too big,{huge}", f't-3,quoted,"multi\nline {huge}"', "t-4,after,fine too"],
    )
    report_path = tmp_path / "report.json"
    stderr = io.StringIO()
    with pytest.raises(CommandError, match="2 bad row"):
        call_command("import_tickets", str(path), "--no-route", "--json", str(report_path), stderr=stderr)
    report = json.loads(report_path.read_text())
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(3, "body"), (5, "body")]
    assert f"{CSV_FIELD_MAX + 1:,} characters" in report["errors"][0]["reason"]
    assert f"line 3: body: {CSV_FIELD_MAX + 1:,} characters" in stderr.getvalue()
    assert not Ticket.objects.exists()


def test_a_ticket_body_under_the_reader_limit_but_over_the_ticket_limit_is_named(tmp_path, billing):
    path = oversized_csv(tmp_path, "subject,body", ["long, " + "y" * 60_000])
    report = import_tickets(path.read_bytes(), "csv", route=False)
    assert [(e.line, e.field) for e in report.errors] == [(2, "body")]


def test_the_label_importer_reports_an_oversized_csv_field_too(tmp_path, billing):
    create_ticket({"external_id": "t-1", "body": "stored"}, route=False)
    path = oversized_csv(tmp_path, "external_id,team", ["t-1,billing", "t-1," + "z" * (CSV_FIELD_MAX + 5)])
    report_path = tmp_path / "labels.json"
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_labels", str(path), "--json", str(report_path), stderr=io.StringIO())
    errors = json.loads(report_path.read_text())["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [(3, "team")]
    assert not Correction.objects.exists()


def test_the_csv_reader_limit_is_restored_after_an_import(tmp_path, db):
    before = csv.field_size_limit()
    path = oversized_csv(tmp_path, "subject,body", ["s, " + "y" * (CSV_FIELD_MAX + 1)])
    import_tickets(path.read_bytes(), "csv", route=False)
    assert csv.field_size_limit() == before
