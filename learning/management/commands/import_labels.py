from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from config.commands import DatabaseCommand
from learning.label_import import import_labels
from triage.importing import ImportFileError, detect_format, finish_import_command


class Command(DatabaseCommand):
    help = (
        "Import routing labels of existing tickets from CSV (header: external_id,team) or JSONL "
        '({"external_id": ..., "team": ...} per line). team is a slug or a team name. A file with any bad '
        "row imports nothing and lists every problem as line, field, reason. Labels are stored as "
        "'imported' corrections: the latest label of a ticket wins for training, all stay for audit."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file extension")
        parser.add_argument("--user", help="username recorded as the labels' author")
        parser.add_argument("--json", dest="json_out", type=Path, help="write the report as JSON here")

    def handle(self, *args, file: Path, format: str | None, user: str | None, json_out: Path | None, **options):
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        agent = None
        if user:
            agent = get_user_model().objects.filter(username=user).first()
            if agent is None:
                raise CommandError(f"no user {user!r}")
        try:
            report = import_labels(file.read_bytes(), format or detect_format(file), agent=agent)
        except ImportFileError as exc:
            raise CommandError(f"{file}: {exc}") from None
        finish_import_command(report, source=file, json_out=json_out, stderr=self.stderr)
        self.stdout.write(
            self.style.SUCCESS(f"labels: {report.created} stored, {report.unchanged} already the ticket's label")
        )
