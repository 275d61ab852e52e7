"""Assemble the Inkwell held-out routing set from the hand-written sources: ``python eval_data/inkwell/build.py``.

The sources are ``src/<team>.txt``: tickets separated by lines holding only ``===``, each written by
hand with its team (the file) decided together with the text. This script only numbers, splits and
formats them; it never changes what a ticket says or where it goes.

* Ticket ids are ``ikw-`` and six hex digits of ``sha1("<team>/<position in the file>")``.
* Split, per team, by the order of ``sha1("split/<id>")``: the first 15 tickets are test, the others
  the unlabeled stream. Nobody chose which ticket goes where.
* Texts are one line in the TSVs: a line break inside a paragraph becomes one space and a blank line
  (between paragraphs, before a signature or a quoted reply) two spaces, as in ``eval_data/parcelwise``.
  ``tickets.jsonl`` keeps the texts as written, line breaks included.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
TEST_PER_TEAM = 15
SEPARATOR = re.compile(r"^===\s*$", re.M)


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def flatten(text: str) -> str:
    """One line: paragraphs joined by two spaces, lines inside a paragraph by one."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "  ".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)


def teams() -> list[str]:
    return [line.split("\t")[0] for line in (HERE / "teams.tsv").read_text().splitlines()[1:] if line.strip()]


def load_tickets() -> list[dict]:
    tickets: list[dict] = []
    for team in teams():
        parts = [p.strip() for p in SEPARATOR.split((SRC / f"{team}.txt").read_text(encoding="utf-8"))]
        if any(not p for p in parts):
            raise SystemExit(f"{team}: an empty ticket (two separators in a row?)")
        group = [
            {"id": f"ikw-{_sha(f'{team}/{n:02d}')[:6]}", "team": team, "text": text}
            for n, text in enumerate(parts, start=1)
        ]
        for rank, ticket in enumerate(sorted(group, key=lambda t: _sha(f"split/{t['id']}"))):
            ticket["split"] = "test" if rank < TEST_PER_TEAM else "stream"
        tickets.extend(group)
    if len({t["id"] for t in tickets}) != len(tickets):
        raise SystemExit("id collision")
    for ticket in tickets:
        ticket["flat"] = flatten(ticket["text"])
        if "\t" in ticket["text"] or ticket["flat"].startswith('"'):
            raise SystemExit(f"{ticket['id']}: a tab, or a text that starts with a quote")
    return sorted(tickets, key=lambda t: t["id"])


def build(out: Path = HERE) -> dict[str, int]:
    """Write ``test.tsv``, ``stream.tsv`` and ``tickets.jsonl`` into ``out``; the ticket count per split."""
    tickets = load_tickets()
    for split in ("test", "stream"):
        rows = [f"{t['flat']}\t{t['team']}" for t in tickets if t["split"] == split]
        (out / f"{split}.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with (out / "tickets.jsonl").open("w", encoding="utf-8") as handle:
        for t in tickets:
            handle.write(json.dumps({k: t[k] for k in ("id", "split", "team", "text")}, ensure_ascii=False) + "\n")
    return {s: sum(t["split"] == s for t in tickets) for s in ("test", "stream")}


if __name__ == "__main__":
    print(build())
