from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from config.commands import DatabaseCommand
from triage.importers import import_tickets
from triage.importing import ImportFileError, detect_format, finish_import_command


class Command(DatabaseCommand):
    help = (
        "Import tickets from CSV (header: subject,body[,requester,channel,external_id,team]) or JSONL "
        "(one object per line with the same keys). Idempotent by external_id; a file with any bad row "
        "imports nothing and lists every problem as line, field, reason. A 'team' value is stored as a label."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file extension")
        parser.add_argument("--no-route", action="store_true", help="store without enqueueing routing")
        parser.add_argument("--json", dest="json_out", type=Path, help="write the report as JSON here")

    def handle(self, *args, file: Path, format: str | None, no_route: bool, json_out: Path | None, **options):
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        try:
            fmt = format or detect_format(file)
            step = 50

            def progress(done: int, total: int) -> None:
                if done % step == 0 or done == total:
                    self.stdout.write(f"  {done}/{total} rows")

            report = import_tickets(file.read_bytes(), fmt, route=not no_route, progress=progress)
        except ImportFileError as exc:
            raise CommandError(f"{file}: {exc}") from None
        finish_import_command(report, source=file, json_out=json_out, stderr=self.stderr)
        self.stdout.write(self.style.SUCCESS(f"tickets: {report.created} created, {report.unchanged} already present"))
