"""Assemble the Parcelwise evaluation set from the hand-written sources: ``python eval_data/parcelwise/build.py``.

The sources are ``src/<team>.txt``: one ticket after each ``### <article ids>`` line, written by
hand together with its team (the file) and the articles that answer it (``-`` for none). This
script only splits, numbers and formats them; it never changes what a ticket says or where it goes.

* Ticket ids are ``pwt-`` and six hex digits of ``sha1("<team>/<position in the file>")``, so they
  say nothing about the team to someone reading the files.
* Split, per team, by the order of ``sha1("split/<id>")``: the first 20 tickets are test, the
  next 10 dev, the other 40 the unlabeled stream. Nobody chose which ticket goes where.
* Texts are one line in every TSV (the search loaders read one query per line): a line break
  inside a ticket becomes one space and a blank line (between paragraphs, before a signature or
  a quoted reply) two spaces. ``tickets.jsonl`` keeps the texts as written, line breaks included.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
SPLITS = {"test": 20, "dev": 10, "stream": 40}
PER_TEAM = sum(SPLITS.values())
HELPFUL_PER_ARTICLE = 5
HEADER = re.compile(r"^### (-|pw-\d{3}(?:,pw-\d{3})*)$")
ARTICLE = re.compile(r"^=== (pw-\d{3}) \| ([a-z-]+)$", re.M)
URL = "https://help.parcelwise.example/articles/{}"


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def flatten(text: str) -> str:
    """One line: paragraphs joined by two spaces, lines inside a paragraph by one."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "  ".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)


def read_team(path: Path) -> list[dict]:
    team = path.stem
    tickets: list[dict] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = HEADER.match(line)
        if match:
            articles = [] if match.group(1) == "-" else match.group(1).split(",")
            tickets.append({"team": team, "articles": articles, "lines": [], "line": number})
        elif line.startswith("###"):
            raise SystemExit(f"{path}:{number}: malformed header {line!r}")
        elif not tickets:
            raise SystemExit(f"{path}:{number}: text before the first ### header")
        else:
            tickets[-1]["lines"].append(line)
    for position, ticket in enumerate(tickets, start=1):
        ticket["text"] = "\n".join(ticket.pop("lines")).strip()
        ticket["id"] = f"pwt-{_sha(f'{team}/{position:02d}')[:6]}"
        if not ticket["text"]:
            raise SystemExit(f"{path}:{ticket['line']}: empty ticket")
    return tickets


def load_tickets() -> list[dict]:
    teams = [line.split("\t")[0] for line in (HERE / "teams.tsv").read_text().splitlines()[1:] if line.strip()]
    tickets: list[dict] = []
    for team in teams:
        group = read_team(SRC / f"{team}.txt")
        if len(group) != PER_TEAM:
            raise SystemExit(f"{team}: {len(group)} tickets, expected {PER_TEAM}")
        order = sorted(group, key=lambda t: _sha(f"split/{t['id']}"))
        start = 0
        for split, size in SPLITS.items():
            for ticket in order[start : start + size]:
                ticket["split"] = split
            start += size
        tickets.extend(group)
    ids = Counter(t["id"] for t in tickets)
    if max(ids.values()) > 1:
        raise SystemExit(f"id collision: {[i for i, n in ids.items() if n > 1]}")
    for ticket in tickets:
        ticket["flat"] = flatten(ticket["text"])
        if "\t" in ticket["text"] or ticket["flat"].startswith('"'):
            raise SystemExit(f"{ticket['team']}:{ticket['line']}: a tab, or a text that starts with a quote")
    return sorted(tickets, key=lambda t: t["id"])


def load_articles() -> list[dict]:
    """``src/articles.md``: each article after a ``=== <id> | <owning team>`` line, starting with ``# Title``."""
    parts = ARTICLE.split((SRC / "articles.md").read_text(encoding="utf-8"))
    articles = []
    for article_id, team, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        body = body.strip()
        if not body.startswith("# "):
            raise SystemExit(f"{article_id}: the body must start with '# Title'")
        title = body.splitlines()[0][2:].strip()
        articles.append({"id": article_id, "title": title, "body": body, "url": URL.format(article_id), "team": team})
    return articles


def feedback_rows(tickets: list[dict]) -> list[str]:
    """Helpful marks from the stream only: for each article, the first five stream tickets it answers
    (in ``sha1("helpful/<id>")`` order), then the hand-judged "not helpful" marks of ``src/not_helpful.tsv``."""
    stream = {t["id"]: t for t in tickets if t["split"] == "stream"}
    articles = sorted({a for t in stream.values() for a in t["articles"]})
    rows = []
    for article in articles:
        answered = sorted(
            (t for t in stream.values() if article in t["articles"]), key=lambda t: _sha(f"helpful/{t['id']}")
        )
        rows += [f"{t['flat']}\t{article}\t1" for t in answered[:HELPFUL_PER_ARTICLE]]
    for number, line in enumerate((SRC / "not_helpful.tsv").read_text(encoding="utf-8").splitlines(), start=1):
        if not line.startswith("pwt-"):
            continue
        ticket_id, article, _why = line.split("\t")
        ticket = stream.get(ticket_id)
        if ticket is None or article in ticket["articles"]:
            raise SystemExit(
                f"src/not_helpful.tsv:{number}: {ticket_id} is not a stream ticket, or {article} answers it"
            )
        rows.append(f"{ticket['flat']}\t{article}\t0")
    return rows


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def build(out: Path = HERE) -> list[dict]:
    """Write every derived file into ``out`` (the tests build into a scratch folder and compare)."""
    tickets = load_tickets()
    if (SRC / "articles.md").exists():
        write(out / "articles.jsonl", [json.dumps(a, ensure_ascii=False) for a in load_articles()])
    if (SRC / "not_helpful.tsv").exists():
        write(out / "feedback.tsv", ["text\tarticle_id\thelpful", *feedback_rows(tickets)])
    rows = [{k: t[k] for k in ("id", "split", "team", "articles", "text")} for t in tickets]
    write(out / "tickets.jsonl", [json.dumps(row, ensure_ascii=False) for row in rows])
    for split in SPLITS:
        part = [t for t in tickets if t["split"] == split]
        write(out / f"{split}.tsv", ["text\tlabel"] + [f"{t['flat']}\t{t['team']}" for t in part])
        if split != "stream":
            write(out / f"search_{split}_queries.tsv", [f"{t['id']}\t{t['flat']}" for t in part])
            write(out / f"search_{split}_qrels.tsv", [f"{t['id']}\t{a}\t1" for t in part for a in t["articles"]])
    return tickets


if __name__ == "__main__":
    built = build()
    print(Counter(t["split"] for t in built))
