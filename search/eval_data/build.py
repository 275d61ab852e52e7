"""Build the demo evaluation set from the demo tickets: ``python -m search.eval_data.build``.

Each demo ticket lists the articles that genuinely help it (``articles``). A ticket is a query
(subject and body, as the app searches it) and each listed article a relevant one (grade 1; the
demo data does not grade them). Tickets are split by a hash of their id, so adding tickets never
moves an old one between the parts:

* ``demo_dev_*``: 40 % of the tickets, the only ones the fusion weights are fitted on;
* ``demo_test_*``: the other 60 %, for reporting;
* ``demo_subject_dev_*``: the subject lines alone of the dev tickets, so that the weights are also
  fitted on short, chat-like queries (one-liners where the body's detail is missing);
* ``demo_subject_test_*``: the subject lines alone of half of the test tickets (hash bucket
  40-69), a second, never-fitted set of short queries. Half, because reranking is the costly part
  of an evaluation on two shared CPU cores.

Tickets that list no article are *no-answer* queries: they go into ``demo_dev_*`` / ``demo_test_*``
without a qrels line (the ranking metrics skip them; the "no article fits" cutoff is scored on them),
with the hand-written questions of ``demo_no_answer.tsv`` that no demo article answers, split by the
same hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent.parent / "triage" / "demo_data" / "tickets.jsonl"
DEV_SHARE = 40  # percent
NO_ANSWER = HERE / "demo_no_answer.tsv"


def _clean(text: str) -> str:
    return " ".join(text.split())


def bucket(external_id: str) -> int:
    return int(hashlib.sha1(external_id.encode()).hexdigest(), 16) % 100


def build(tickets_path: Path = DEMO, out: Path = HERE) -> dict[str, int]:
    stages = ("dev", "subject_dev", "test", "subject_test")
    parts: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in stages}
    for line in tickets_path.read_text().splitlines():
        if not line.strip():
            continue
        ticket = json.loads(line)
        articles = ticket.get("articles") or []
        qid = ticket["external_id"]
        text = _clean(f"{ticket.get('subject', '')}\n\n{ticket['body']}")
        b = bucket(qid)
        if not articles:
            parts["dev" if b < DEV_SHARE else "test"][0].append(f"{qid}\t{text}")
            continue
        names = ["dev", "subject_dev"] if b < DEV_SHARE else ["test", "subject_test"] if b < 70 else ["test"]
        for name in names:
            queries, qrels = parts[name]
            subject_only = name.startswith("subject")
            query = _clean(ticket.get("subject") or ticket["body"].splitlines()[0]) if subject_only else text
            queries.append(f"{qid}\t{query}")
            qrels.extend(f"{qid}\t{article}\t1" for article in dict.fromkeys(articles))
    for line in NO_ANSWER.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            qid, text = line.split("\t", 1)
            parts["dev" if bucket(qid) < DEV_SHARE else "test"][0].append(f"{qid}\t{_clean(text)}")
    counts = {}
    for name, (queries, qrels) in parts.items():
        write_set(out, f"demo_{name}", queries, qrels)
        counts[name] = len(queries)
    return counts


def write_set(out: Path, prefix: str, queries: list[str], qrels: list[str]) -> None:
    """``<prefix>_queries.tsv`` and ``<prefix>_qrels.tsv`` in the evaluate_search formats, from their lines."""
    (out / f"{prefix}_queries.tsv").write_text("\n".join(queries) + "\n")
    (out / f"{prefix}_qrels.tsv").write_text("\n".join(qrels) + "\n")


if __name__ == "__main__":
    print(build())
