"""Check the Parcelwise set with the project's own loaders and print its statistics.

``.venv/bin/python eval_data/parcelwise/check.py`` (from the repo root). Exits non-zero on
any problem: counts per team and split, repeated or near-repeated texts, qrels or feedback naming
an article that does not exist, feedback drawn from outside the stream.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

SHORT_MAX, LONG_MIN = 15, 80  # words: chat line <= 15 < medium < 80 <= long e-mail
NEAR_DUPLICATE = 0.6  # Jaccard similarity of word sets above which two tickets are too alike


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def length_class(text: str) -> str:
    n = len(words(text))
    return "short" if n <= SHORT_MAX else "long" if n >= LONG_MIN else "medium"


def main() -> int:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    import importlib

    from django.core.management import get_commands

    # The readers of the routing command itself, wherever the app that owns it lives.
    routing = importlib.import_module(f"{get_commands()['evaluate_routing']}.management.commands.evaluate_routing")
    read_descriptions, read_labeled_tsv = routing.read_descriptions, routing.read_labeled_tsv
    from search.evaluation import load_kb, load_qrels, load_queries

    problems: list[str] = []
    teams = read_descriptions(HERE / "teams.tsv")
    tickets = [json.loads(line) for line in (HERE / "tickets.jsonl").read_text().splitlines()]
    by_flat = {}
    expected = {"stream": 40, "dev": 10, "test": 20}
    for split, per_team in expected.items():
        texts, labels = read_labeled_tsv(HERE / f"{split}.tsv")
        counts = Counter(labels)
        if set(counts) != set(teams) or set(counts.values()) != {per_team}:
            problems.append(f"{split}.tsv: per-team counts {dict(counts)}")
        by_flat.update(dict(zip(texts, labels, strict=True)))
        lengths = [len(words(t)) for t in texts]
        classes = Counter(length_class(t) for t in texts)
        print(
            f"{split:6} n={len(texts):3}  words median {statistics.median(lengths):.0f}, "
            f"min {min(lengths)}, max {max(lengths)}  "
            + ", ".join(f"{c} {classes[c]} ({classes[c] / len(texts):.0%})" for c in ("short", "medium", "long"))
        )
    if len(by_flat) != len(tickets):
        problems.append(f"{len(tickets)} tickets but {len(by_flat)} distinct texts across the TSVs")

    sets = [(t["id"], set(words(t["text"]))) for t in tickets]
    for (a, wa), (b, wb) in itertools.combinations(sets, 2):
        if len(wa | wb) and len(wa & wb) / len(wa | wb) > NEAR_DUPLICATE:
            problems.append(f"near-duplicates {a} {b}")

    kb_path = HERE / "articles.jsonl"
    article_ids = {a["id"] for a in load_kb(kb_path)} if kb_path.exists() else None
    if article_ids is not None:
        bodies = {a["id"]: len(words(a["body"])) for a in load_kb(kb_path)}
        print(f"articles n={len(bodies)}  body words min {min(bodies.values())}, max {max(bodies.values())}")
        cited = {a for t in tickets for a in t["articles"]}
        print(f"articles no ticket needs: {sorted(article_ids - cited)}")
        if cited - article_ids:
            problems.append(f"tickets cite missing articles {sorted(cited - article_ids)}")
    for split in ("dev", "test"):
        queries = load_queries(HERE / f"search_{split}_queries.tsv")
        qrels = load_qrels(HERE / f"search_{split}_qrels.tsv")
        mine = {t["id"]: t for t in tickets if t["split"] == split}
        if set(queries) != set(mine) or any(queries[q] not in by_flat for q in queries):
            problems.append(f"search_{split}_queries.tsv does not match {split}.tsv")
        if set(qrels) - set(mine):
            problems.append(f"search_{split}_qrels.tsv names queries outside {split}")
        if article_ids is not None and {a for r in qrels.values() for a in r} - article_ids:
            problems.append(f"search_{split}_qrels.tsv names missing articles")
        print(
            f"search {split}: {len(queries)} queries, {len(qrels)} with a relevant article, "
            f"{sum(len(r) for r in qrels.values())} qrels lines"
        )

    feedback = HERE / "feedback.tsv"
    if feedback.exists():
        stream_texts = set(read_labeled_tsv(HERE / "stream.tsv")[0])
        with feedback.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, dialect="excel-tab"))
        if rows[0] != ["text", "article_id", "helpful"]:
            problems.append(f"feedback.tsv header {rows[0]}")
        marks: Counter[str] = Counter()
        per_article: Counter[str] = Counter()
        for row in rows[1:]:
            if row[0] not in stream_texts:
                problems.append(f"feedback.tsv: a text not in the stream: {row[0][:60]!r}")
            if article_ids is not None and row[1] not in article_ids:
                problems.append(f"feedback.tsv: unknown article {row[1]}")
            marks[row[2]] += 1
            per_article[row[1]] += row[2] == "1"
        helpful = sorted(n for n in per_article.values() if n)  # articles with helpful marks
        print(f"feedback: {dict(marks)} marks; helpful per article min {helpful[0]}, max {helpful[-1]}")

    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
