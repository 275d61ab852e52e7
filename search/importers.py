"""Article import from JSONL, or from Markdown / HTML / text files (one file, or a directory of them).

Every row or file is validated first; with any problem nothing is written and the report lists each
as (line, field, reason), the file's path leading the field for file imports. A good import is
written in one transaction and is idempotent: rows are matched by external id, else by URL, and
unchanged rows are left alone (no re-embedding).

JSONL: one object per line, ``{"id", "title", "body"}`` required, optional ``url``, ``team`` (slug),
``format`` (``markdown`` default, ``html``, ``text``) and ``published``.

Files: ``.md``/``.markdown``, ``.html``/``.htm``, ``.txt``. The external id is the file's path
relative to the imported directory (or its name); the title is the first heading (or ``<title>``),
else the file name. Markdown may start with front matter lines ``key: value`` between ``---`` lines
(``id``, ``title``, ``url``, ``team``, ``published``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from triage.importing import ImportFileError, ImportReport, RowError, errors_from_validation, iter_rows

from .content import guess_format
from .services import clean_article_fields, find_article, upsert_article

ARTICLE_SUFFIXES = {".md", ".markdown", ".html", ".htm", ".txt"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_MD_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)
_HTML_TITLE = re.compile(r"<(title|h1)\b[^>]*>(.*?)</\1>", re.I | re.S)


@dataclass(frozen=True)
class Row:
    line: int
    label: str  # file path for file imports, "" for JSONL
    data: dict[str, Any]


def _prefixed(label: str, errors: list[RowError]) -> list[RowError]:
    return [RowError(e.line, f"{label}: {e.field}" if label else e.field, e.reason) for e in errors]


def read_text_file(path: Path, label: str, errors: list[RowError]) -> str | None:
    """The file as UTF-8 text, or None with the reason added to ``errors`` (binary, not UTF-8, too big)."""
    size = path.stat().st_size
    # UTF-8 takes at most 4 bytes a character: anything bigger cannot fit the body limit.
    if size > 4 * settings.SEARCH_ARTICLE_MAX_CHARS:
        errors.append(
            RowError(
                1,
                f"{label}: body",
                f"file is {size:,} bytes; the body limit is {settings.SEARCH_ARTICLE_MAX_CHARS:,} characters",
            )
        )
        return None
    data = path.read_bytes()
    if b"\x00" in data:
        errors.append(RowError(1, f"{label}: file", "is binary (it contains NUL bytes), not an article"))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        errors.append(RowError(line, f"{label}: file", f"is not valid UTF-8 (byte {exc.start}); save it as UTF-8"))
        return None


def row_from_file(path: Path, label: str, text: str) -> dict[str, Any]:
    """Article fields from one Markdown / HTML / text file."""
    fields: dict[str, Any] = {"external_id": label}
    match = _FRONT_MATTER.match(text)
    if match and path.suffix.lower() in (".md", ".markdown"):
        for line in match.group(1).splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("id", "title", "url", "team", "published"):
                fields[key.strip()] = value.strip().strip("'\"")
        text = text[match.end() :]
        if "id" in fields:
            fields["external_id"] = fields.pop("id")
    fmt = guess_format(path.name, text)
    if "title" not in fields:
        if fmt == "markdown" and (heading := _MD_HEADING.search(text)):
            fields["title"] = heading.group(1)
        elif fmt == "html" and (heading := _HTML_TITLE.search(text)):
            fields["title"] = re.sub(r"<[^>]+>", "", heading.group(2)).strip()
        else:
            fields["title"] = path.stem.replace("-", " ").replace("_", " ").strip().capitalize()
    fields.update(body=text, body_format=fmt)
    return fields


def collect_rows(path: Path, errors: list[RowError], fmt: str | None = None) -> list[Row]:
    """Rows of a JSONL file, an article file, or every article file under a directory."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ARTICLE_SUFFIXES)
        if not files:
            raise ImportFileError(f"no article files ({', '.join(sorted(ARTICLE_SUFFIXES))}) under {path}")
        rows = []
        for file in files:
            label = file.relative_to(path).as_posix()
            text = read_text_file(file, label, errors)
            if text is not None:
                rows.append(Row(1, label, row_from_file(file, label, text)))
        return rows
    suffix = path.suffix.lower()
    fmt = fmt or ("jsonl" if suffix in JSONL_SUFFIXES else "file" if suffix in ARTICLE_SUFFIXES else None)
    if fmt == "jsonl":
        return [Row(line, "", row) for line, row in iter_rows(path.read_bytes(), "jsonl", errors)]
    if fmt == "file":
        text = read_text_file(path, path.name, errors)
        return [Row(1, path.name, row_from_file(path, path.name, text))] if text is not None else []
    raise ImportFileError(
        f"{path.name}: unknown format {suffix!r}; use .jsonl, .md, .html, .txt or a directory (or --format)"
    )


def import_articles(
    path: Path,
    *,
    fmt: str | None = None,
    index: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[ImportReport, list[int]]:
    """Validate then write every article of ``path``; returns the report and the ids written.

    Nothing is written when any row is bad. Created and changed articles are queued for indexing
    (``index``) once the import commits; unchanged ones are not touched.
    """
    report = ImportReport()
    rows = collect_rows(path, report.errors, fmt)
    seen: dict[str, str] = {}
    valid: list[Row] = []
    for row in rows:
        try:
            cleaned = clean_article_fields(row.data)
        except ValidationError as exc:
            report.errors.extend(_prefixed(row.label, errors_from_validation(row.line, exc)))
            continue
        key = cleaned["external_id"] or cleaned["url"]
        where = f"{row.label} line {row.line}" if row.label else f"line {row.line}"
        if key and key in seen:
            field = "external_id" if cleaned["external_id"] else "url"
            report.errors.extend(_prefixed(row.label, [RowError(row.line, field, f"duplicate of {seen[key]}")]))
            continue
        if key:
            seen[key] = where
        valid.append(row)
    if report.errors:
        report.errors.sort(key=lambda e: (e.field.split(": ")[0] if ": " in e.field else "", e.line))
        return report, []

    written: list[int] = []
    with transaction.atomic():
        for done, row in enumerate(valid, start=1):
            existing = find_article(
                str(row.data.get("external_id", row.data.get("id")) or "") or None, row.data.get("url") or None
            )
            article, outcome = upsert_article(row.data, article=existing, index=index)
            setattr(report, outcome, getattr(report, outcome) + 1)
            if outcome != "unchanged":
                written.append(article.pk)
            if progress:
                progress(done, len(valid))
    return report, written
