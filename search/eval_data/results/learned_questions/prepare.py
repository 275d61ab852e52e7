"""Inputs of the learned-question exploration (issue #17), DEV sets only: ``python prepare.py pw subj demo bank``.

Per set: the stage scores ``evaluate_search --save-features`` wrote to ``.data/learned_questions/`` (see
``variants.py`` for the commands), the queries' and marked tickets' asks and sentences, the product's
best-3 sentences per mark, the KB's passage vectors, all embedded through the evaluation cache, pickled
next to the features. Exploration code, not served.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from mlops.inference.encoders import get_embedder  # noqa: E402
from mlops.text import best_sentences, clean_ask, split_sentences  # noqa: E402
from search.eval_cache import CachedEmbedder  # noqa: E402
from search.evaluation import load_feedback, load_kb, load_queries  # noqa: E402

EXP = ROOT / ".data/learned_questions"
SETS = {
    "pw": dict(
        kb="eval_data/parcelwise/articles.jsonl",
        queries="eval_data/parcelwise/search_dev_queries.tsv",
        feedback="eval_data/parcelwise/feedback.tsv",
        feat="pw_dev.feat.json",
    ),
    "subj": dict(
        kb="triage/demo_data/articles.jsonl",
        queries="search/eval_data/demo_subject_dev_queries.tsv",
        feedback="search/eval_data/demo_feedback.tsv",
        feat="subj_dev.feat.json",
        own_via="search/eval_data/demo_dev_queries.tsv",
    ),
    "demo": dict(
        kb="triage/demo_data/articles.jsonl",
        queries="search/eval_data/demo_dev_queries.tsv",
        feedback="search/eval_data/demo_feedback.tsv",
        feat="demo_dev.feat.json",
        own_via="search/eval_data/demo_dev_queries.tsv",
    ),
    "bank": dict(
        kb="search/eval_data/bank_kb.jsonl",
        queries="search/eval_data/bank_dev_queries.tsv",
        feedback="search/eval_data/bank_feedback.tsv",
        feat="bank_dev.feat.json",
    ),
}

_embedder = None


def embedder():
    global _embedder
    if _embedder is None:
        _embedder = CachedEmbedder(get_embedder(), ROOT / ".data/search-eval-cache.sqlite")
    return _embedder


def kb_passages(kb_path: str) -> dict[str, np.ndarray]:
    from search.indexing import build_passages
    from search.models import Article

    out = {}
    for row in load_kb(ROOT / kb_path):
        art = Article(title=row["title"], body=row["body"], body_format=row.get("format", "markdown"))
        drafts = build_passages(art, embedder())
        out[row["id"]] = embedder().encode([d.text for d in drafts])
    return out


def prepare(name: str) -> dict:
    """Everything a variant needs: texts, sentence vectors, passage vectors, marks, features."""
    cache = EXP / f"{name}.prep.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    cfg = SETS[name]
    feat = json.loads((EXP / cfg["feat"]).read_text())
    queries = load_queries(ROOT / cfg["queries"])
    marks = load_feedback(ROOT / cfg["feedback"])
    passages = kb_passages(cfg["kb"])
    # past tickets in file order, as learn_feedback numbers them
    tickets: dict[str, int] = {}
    for text, _, _ in marks:
        tickets.setdefault(text, len(tickets) + 1)
    ticket_text = {t: text for text, t in tickets.items()}
    # which past ticket is a query's own (demo: the dev tickets themselves)
    own: dict[str, int] = {}
    if cfg.get("own_via"):
        via = load_queries(ROOT / cfg["own_via"])
        for qid in queries:
            t = tickets.get(via.get(qid, "\x00"))
            if t is not None:
                own[qid] = t
    texts = {}  # key -> raw text
    for qid, text in queries.items():
        texts[("q", qid)] = text
    for t, text in ticket_text.items():
        texts[("t", t)] = text
    E = embedder()
    rep = {}
    for key, text in texts.items():
        # a mark's question: clean_ask at mark time, again when embedded (questions.py)
        cleaned = clean_ask(clean_ask(text)) if key[0] == "t" else clean_ask(text)
        ask = " ".join(cleaned.split())[:2000]
        sents = split_sentences(cleaned)
        rep[key] = dict(raw=" ".join(text.split())[:2000], ask=ask, sents=sents)
    allt = sorted({s for r in rep.values() for s in [r["raw"], r["ask"], *r["sents"]]})
    print(name, "embedding", len(allt), "texts", flush=True)
    vec = dict(zip(allt, E.encode(allt), strict=True))
    # best-3 per mark (needs the article): the product's ask_for_article
    best3 = {}
    for text, kb_id, _ in marks:
        r = rep[("t", tickets[text])]
        s = r["sents"]
        if len(s) <= 3:
            best3[(tickets[text], kb_id)] = clean_ask(clean_ask(text))
        else:
            sv = np.stack([vec[x] for x in s])
            best3[(tickets[text], kb_id)] = " ".join(best_sentences(s, sv, passages[kb_id], keep=3))
    b3 = sorted(set(best3.values()) - set(vec))
    if b3:
        vec.update(zip(b3, E.encode(b3), strict=True))
    data = dict(
        feat=feat,
        queries=queries,
        marks=[(tickets[t], a, h) for t, a, h in marks],
        own=own,
        rep=rep,
        vec=vec,
        best3=best3,
        passages=passages,
    )
    cache.write_bytes(pickle.dumps(data))
    return data


if __name__ == "__main__":
    for n in sys.argv[1:]:
        prepare(n)
