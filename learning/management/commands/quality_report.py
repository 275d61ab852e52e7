"""``python manage.py quality_report [--json OUT] [--model-version ID]``: the /models/reports/ numbers."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError

from config.commands import DatabaseCommand
from learning.reports import format_report, quality_report
from mlops.models import ModelVersion


class Command(DatabaseCommand):
    help = (
        "Model quality per model version and ISO week: accuracy, macro-F1, ECE, auto-route rate and precision, "
        "needs-triage rate, suggestion helpfulness (helpful share, MRR of the first helpful article). "
        "Prints a table; --json OUT also writes the numbers as JSON (OUT '-' for standard output)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", dest="json_out", metavar="OUT", help="write the report as JSON to this file ('-': stdout)"
        )
        parser.add_argument("--model-version", type=int, metavar="ID", help="only this model version (its id)")

    def handle(self, *args, json_out: str | None = None, model_version: int | None = None, **options):
        version = None
        if model_version is not None:
            version = ModelVersion.objects.filter(pk=model_version).first()
            if version is None:
                raise CommandError(f"no model version with id {model_version}")
        report = quality_report(model_version=version)
        if json_out == "-":
            self.stdout.write(_dumps(report))
            return
        self.stdout.write(format_report(report), ending="")
        if json_out:
            path = Path(json_out)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(_dumps(report) + "\n")
            except OSError as exc:
                raise CommandError(f"cannot write {path}: {exc}") from exc
            self.stdout.write(f"JSON written to {path}")


def _dumps(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False)
