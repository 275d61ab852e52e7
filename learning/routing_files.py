"""Routing evaluation files: ``text<TAB>label`` tickets, unlabeled streams and class descriptions.

Readers raise ``CommandError`` with the file and line of what is wrong, for the commands that read them.
"""

from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import CommandError


def read_labeled_tsv(path: str | Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a ``text<TAB>label`` file with that header (quoted fields allowed)."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    try:
        handle = path.open(encoding="utf-8", newline="")
        reader = csv.reader(handle, dialect="excel-tab")
        header = next(reader, None)
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc})") from None
    with handle:
        if header is None:
            raise CommandError(f"{path}: the file is empty; expected a header line 'text<TAB>label'")
        if [h.strip().lower() for h in header[:2]] != ["text", "label"]:
            raise CommandError(f"{path}: the header must be 'text<TAB>label', got {header!r}")
        texts: list[str] = []
        labels: list[str] = []
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) < 2:
                    raise CommandError(f"{path}: line {line}: expected 'text<TAB>label', got {len(row)} column(s)")
                text, label = row[0].strip(), row[1].strip()
                if not text:
                    raise CommandError(f"{path}: line {line}: empty text")
                if not label:
                    raise CommandError(f"{path}: line {line}: empty label")
                texts.append(text)
                labels.append(label)
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path}: not UTF-8 text ({exc})") from None
        except csv.Error as exc:
            raise CommandError(f"{path}: line {reader.line_num}: {exc}") from None
    if not texts:
        raise CommandError(f"{path}: no rows after the header")
    return texts, labels


def read_descriptions(path: str | Path) -> dict[str, tuple[str, str]]:
    """``label<TAB>description[<TAB>hypothesis]`` per line (a ``label<TAB>description`` header is optional)."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    out: dict[str, tuple[str, str]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, dialect="excel-tab")
        for row in reader:
            if not row or not row[0].strip() or row[0].startswith("#"):
                continue
            if reader.line_num == 1 and [c.strip().lower() for c in row[:2]] == ["label", "description"]:
                continue
            if len(row) < 2 or not row[1].strip():
                raise CommandError(f"{path}: line {reader.line_num}: expected 'label<TAB>description'")
            label = row[0].strip()
            if label in out:
                raise CommandError(f"{path}: line {reader.line_num}: label {label!r} is described twice")
            out[label] = (row[1].strip(), row[2].strip() if len(row) > 2 else "")
    return out


def read_unlabeled_texts(path: str | Path, limit: int = 0) -> list[str]:
    """The first column of a ``text`` or ``text<TAB>label`` file, the first ``limit`` rows (0: all).

    Only the text is read: any other column is skipped unread, so a stream that happens to carry
    labels (for a person to audit) cannot leak them into self-training.
    """
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    texts: list[str] = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, dialect="excel-tab")
            header = next(reader, None)
            if header is None:
                raise CommandError(f"{path}: the file is empty; expected a header line 'text' or 'text<TAB>label'")
            if not header or header[0].strip().lower() != "text":
                raise CommandError(f"{path}: the first column must be headed 'text', got {header[:1]!r}")
            for row in reader:
                text = row[0].strip() if row else ""
                if text:
                    texts.append(text)
                if limit and len(texts) >= limit:
                    break
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc})") from None
    except csv.Error as exc:
        raise CommandError(f"{path}: line {reader.line_num}: {exc}") from None
    if not texts:
        raise CommandError(f"{path}: no tickets after the header")
    return texts
