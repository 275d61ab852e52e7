from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import CommandError

from config.commands import DatabaseCommand
from triage.importing import ImportFileError, finish_import_command


class Command(DatabaseCommand):
    help = (
        'Import knowledge-base articles from JSONL (one {"id", "title", "body"[, "url", "team", '
        '"format", "published"]} per line), or from Markdown / HTML / text files (a file or a directory). '
        "Idempotent by id, else URL; a file with any bad row imports nothing and lists every problem as "
        "line, field, reason. Changed articles are indexed by the worker (or here with --sync)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="a .jsonl file, an article file, or a directory")
        parser.add_argument("--format", choices=["jsonl", "file"], help="default: from the extension")
        parser.add_argument("--sync", action="store_true", help="index here and now instead of on the worker")
        parser.add_argument("--no-index", action="store_true", help="store without indexing (searchable later)")
        parser.add_argument("--json", dest="json_out", type=Path, help="write the report as JSON here")

    def handle(self, *args, path: Path, format: str | None, sync: bool, no_index: bool, json_out, **options):
        from search.importers import import_articles

        if not path.exists():
            raise CommandError(f"{path}: no such file or directory")
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            if done % 25 == 0 or done == total:
                self.stdout.write(f"  stored {done}/{total} articles")

        try:
            report, written = import_articles(path, fmt=format, index=not (sync or no_index), progress=progress)
        except ImportFileError as exc:
            raise CommandError(str(exc)) from None
        finish_import_command(report, source=path, json_out=json_out, stderr=self.stderr, what="problem(s)")
        self.stdout.write(
            self.style.SUCCESS(
                f"articles: {report.created} created, {report.updated} updated, {report.unchanged} unchanged"
            )
        )
        if sync and written:
            from search.indexing import index_article

            outcomes: dict[str, int] = {}
            for done, pk in enumerate(written, start=1):
                outcome = index_article(pk)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if done % 10 == 0 or done == len(written):
                    self.stdout.write(f"  indexed {done}/{len(written)} articles")
            self.stdout.write(f"indexing: {outcomes} in {time.monotonic() - started:.1f} s")
        elif written and not no_index:
            self.stdout.write(f"{len(written)} article(s) queued for indexing on the inference queue")
