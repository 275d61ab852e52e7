"""Feedback files for ``evaluate_search --feedback``: past tickets with agents' marks, none of them a
test query. ``python -m search.eval_data.build_feedback``.

* ``demo_feedback.tsv``: every demo *dev* ticket (subject and body, as the app searches it) marked
  helpful for each article it lists (the demo tickets carry no not-helpful marks). The demo test
  and subject-test queries are test tickets, so none of them is here.
* ``bank_feedback.tsv``: 5 utterances per intent from Banking77's *train* split (the evaluation sets
  are its dev and test splits), marked helpful for their intent's article; and, as an agent would
  dismiss a wrong first suggestion, each one's nearest other article (by the packaged bi-encoder, on
  title and body) marked not helpful when it outranks the right one.
* ``bank_feedback_1.tsv`` / ``bank_feedback_3.tsv``: the first 1 / 3 of those utterances per intent.

The header line is ``text<TAB>article_id<TAB>helpful``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .build import DEMO, DEV_SHARE, _clean, bucket
from .build_bank import banking77_dir

HERE = Path(__file__).resolve().parent
HEADER = "text\tarticle_id\thelpful"
PER_INTENT = 5


def demo_rows(tickets_path: Path = DEMO) -> list[tuple[str, str, int]]:
    rows = []
    for line in tickets_path.read_text().splitlines():
        if not line.strip():
            continue
        ticket = json.loads(line)
        if bucket(ticket["external_id"]) >= DEV_SHARE or not ticket.get("articles"):
            continue
        text = _clean(f"{ticket.get('subject', '')}\n\n{ticket['body']}")
        rows.extend((text, article, 1) for article in dict.fromkeys(ticket["articles"]))
    return rows


def bank_rows(per_intent: int = PER_INTENT) -> list[tuple[str, str, int, int]]:
    """(text, article, helpful, its index among its intent's utterances) for the bank help centre."""
    import numpy as np

    from mlops.inference.encoders import get_embedder

    kb = [json.loads(line) for line in (HERE / "bank_kb.jsonl").read_text().splitlines() if line.strip()]
    by_intent: dict[str, list[str]] = {}
    # The train file has a few utterances broken over lines by stray quotes: those lines are skipped.
    for line in (banking77_dir() / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) == 2 and cols[0].strip():
            by_intent.setdefault(f"bank-{cols[1].strip()}", []).append(" ".join(cols[0].split()))
    picked = []
    rng = random.Random(17)
    for article in kb:
        texts = sorted(by_intent.get(article["id"], []))
        picked.extend((t, article["id"], i) for i, t in enumerate(rng.sample(texts, min(per_intent, len(texts)))))
    embedder = get_embedder()
    articles = embedder.encode([f"{a['title']}. {a['body']}" for a in kb])
    vectors = embedder.encode([t for t, _, _ in picked])
    similarity = vectors @ articles.T
    rows = []
    for (text, article_id, i), sims in zip(picked, similarity, strict=True):
        rows.append((text, article_id, 1, i))
        order = np.argsort(-sims)
        top = kb[int(order[0])]["id"]
        if top != article_id:
            rows.append((text, top, 0, i))
    return rows


def write(path: Path, rows: list[tuple]) -> None:
    path.write_text(HEADER + "\n" + "".join(f"{r[0]}\t{r[1]}\t{r[2]}\n" for r in rows))


def build(out: Path = HERE) -> dict[str, int]:
    counts = {}
    demo = demo_rows()
    write(out / "demo_feedback.tsv", demo)
    counts["demo"] = len(demo)
    bank = bank_rows()
    for n, name in ((PER_INTENT, "bank_feedback.tsv"), (1, "bank_feedback_1.tsv"), (3, "bank_feedback_3.tsv")):
        rows = [r for r in bank if r[3] < n]
        write(out / name, rows)
        counts[name] = len(rows)
    return counts


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    print(build())
