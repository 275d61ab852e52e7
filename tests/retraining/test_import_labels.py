"""Importing labels of existing tickets (CSV/JSONL): row-level errors, all or nothing, latest wins."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from learning.label_import import import_labels
from learning.labels import collect_labels
from tests.retraining.builders import make_ticket
from triage.models import Correction, Team

pytestmark = pytest.mark.django_db


@pytest.fixture
def tickets(teams):
    return [make_ticket("charged twice", 1), make_ticket("parcel lost", 2), make_ticket("cannot log in", 3)]


def test_a_csv_file_labels_tickets_by_external_id_as_imported_corrections(tickets, admin_ada):
    report = import_labels(b"external_id,team\nT-1,queue-a\nT-2,Queue B\n", "csv", agent=admin_ada)
    assert (report.ok, report.created, report.unchanged) == (True, 2, 0)
    labels = Correction.objects.order_by("ticket_id")
    assert [(c.ticket.external_id, c.to_team_slug, c.kind, c.source, c.agent) for c in labels] == [
        ("T-1", "queue-a", "imported", "import", admin_ada),
        ("T-2", "queue-b", "imported", "import", admin_ada),
    ]


def test_a_jsonl_file_works_the_same(tickets):
    data = b'{"external_id": "T-3", "team": "queue-c"}\n\n{"external_id": "T-1", "team": "queue-a"}\n'
    assert import_labels(data, "jsonl").created == 2


def test_every_bad_row_is_reported_by_line_and_field_and_nothing_is_stored(tickets):
    Team.objects.create(slug="old", name="Old", active=False)
    data = b"external_id,team\nT-1,queue-a\nT-404,queue-a\nT-2,no-such-team\nT-3,old\n,queue-b\n"
    report = import_labels(data, "csv")
    assert [(e.line, e.field) for e in report.errors] == [
        (3, "external_id"),
        (4, "team"),
        (5, "team"),
        (6, "external_id"),
    ]
    assert "T-404" in report.errors[0].reason and "deactivated" in report.errors[2].reason
    assert not Correction.objects.exists()


def test_unknown_columns_and_broken_json_are_row_errors(tickets):
    assert import_labels(b"external_id,team,note\nT-1,queue-a,x\n", "csv").errors[0].field == "note"
    report = import_labels(b'{"external_id": "T-1", "team": "queue-a"}\n{not json\n', "jsonl")
    assert [(e.line, e.field) for e in report.errors] == [(2, "row")]
    assert not Correction.objects.exists()


def test_importing_the_same_file_twice_changes_nothing_the_second_time(tickets):
    data = b"external_id,team\nT-1,queue-a\nT-2,queue-b\n"
    import_labels(data, "csv")
    again = import_labels(data, "csv")
    assert (again.created, again.unchanged) == (0, 2)
    assert Correction.objects.count() == 2


def test_conflicting_labels_are_all_kept_and_the_latest_wins(tickets, teams):
    Correction.objects.create(ticket=tickets[0], kind="corrected", to_team=teams["queue-b"], to_team_slug="queue-b")
    import_labels(b"external_id,team\nT-1,queue-c\nT-1,queue-a\n", "csv")
    assert tickets[0].corrections.count() == 3
    assert {e.ticket_id: e.label for e in collect_labels().examples} == {tickets[0].pk: "queue-a"}


def test_the_command_prints_row_errors_and_fails_without_storing(tickets, tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("external_id,team\nT-1,queue-a\nT-9,queue-a\n")
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_labels", str(bad))
    assert not Correction.objects.exists()


def test_the_command_imports_a_good_file_and_writes_a_json_report(tickets, tmp_path, capsys):
    good = tmp_path / "labels.jsonl"
    good.write_text(json.dumps({"external_id": "T-2", "team": "queue-b"}) + "\n")
    call_command("import_labels", str(good), "--json", str(tmp_path / "report.json"))
    assert "labels: 1 stored" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["created"] == 1
