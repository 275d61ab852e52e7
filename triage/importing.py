"""Reading import files row by row with line numbers, and reporting bad rows precisely.

Shared by the ticket importer here, the article importer in ``search`` and the label importer. An import validates
every row first and writes inside one transaction, so a file is imported whole or not at all.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

# Longest CSV field read (Python's csv default). Each importer has its own, usually lower, limits per
# field (a ticket body: 50,000); this one stops a runaway quoted field from swallowing the file.
CSV_FIELD_MAX = 131_072


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": [e.__dict__ for e in self.errors],
        }


class ImportFileError(Exception):
    """The file as a whole cannot be read (wrong format, not text)."""


def finish_import_command(
    report: ImportReport, *, source: Path, json_out: Path | None, stderr: Any, what: str = "bad row(s)"
) -> None:
    """End an import command: write the JSON report if asked, list every error, and fail when any.

    Raises ``CommandError`` ("N bad row(s); nothing was imported") so the command exits non-zero.
    """
    from django.core.management.base import CommandError

    if json_out:
        json_out.write_text(json.dumps(report.as_dict(), indent=2))
    for error in report.errors:
        stderr.write(f"{source}: {error}")
    if not report.ok:
        raise CommandError(f"{len(report.errors)} {what}; nothing was imported")


def errors_from_validation(line: int, exc: ValidationError) -> list[RowError]:
    if hasattr(exc, "error_dict"):
        return [RowError(line, name, str(msg)) for name, msgs in exc.message_dict.items() for msg in msgs]
    return [RowError(line, "row", msg) for msg in exc.messages]


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ImportFileError(f"{path.name}: unknown format {suffix!r}; use .csv or .jsonl (or --format)")


def iter_rows(data: bytes, fmt: str, errors: list[RowError]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)``; rows that cannot be parsed are added to ``errors`` instead."""
    if b"\x00" in data:
        raise ImportFileError("the file is binary (it contains NUL bytes), not CSV or JSONL text")
    if fmt == "jsonl":
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                errors.append(RowError(number, "row", f"not valid UTF-8 (byte {exc.start})"))
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                errors.append(RowError(number, "row", f"invalid JSON: {exc.msg} at column {exc.colno}"))
                continue
            except RecursionError:
                errors.append(RowError(number, "row", "invalid JSON: nested too deeply"))
                continue
            if not isinstance(row, dict):
                errors.append(RowError(number, "row", "each line must be a JSON object"))
                continue
            yield number, row
    elif fmt == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ImportFileError(f"line {line}: not valid UTF-8 (byte {exc.start}); save the file as UTF-8") from None
        yield from csv_rows(text, errors)
    else:
        raise ImportFileError(f"unknown format {fmt!r}")


def csv_rows(text: str, errors: list[RowError]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of CSV text; a field over ``CSV_FIELD_MAX`` characters is a row error that names it.

    Python's reader stops the whole file at such a field (``_csv.Error``, no line, no report), so the
    reader's own limit is lifted while this file is read and the fields are measured here instead.
    """
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text)))
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            raise ImportFileError("the CSV file has no header row")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # the reader resumes at the next line; the file fails as a whole anyway
                errors.append(RowError(reader.line_num, "row", f"unreadable CSV: {exc}"))
                continue
            if None in row:
                errors.append(RowError(reader.line_num, "row", "more values than header columns"))
                continue
            oversized = [
                RowError(
                    reader.line_num, name, f"{len(value):,} characters; the most a CSV field holds is {CSV_FIELD_MAX:,}"
                )
                for name, value in row.items()
                if value is not None and len(value) > CSV_FIELD_MAX
            ]
            if oversized:
                errors.extend(oversized)
                continue
            yield reader.line_num, row
    finally:
        csv.field_size_limit(limit)
