"""Added cost of the prototypes query: ``nearest_questions`` and ``question_prototypes`` timed per query
(Parcelwise dev with its 212 marks, bank-dev with 502), in throw-away tables: ``python latency.py``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
SETS = [
    (
        "pw",
        "eval_data/parcelwise/articles.jsonl",
        "eval_data/parcelwise/search_dev_queries.tsv",
        "eval_data/parcelwise/feedback.tsv",
    ),
    (
        "bank",
        "search/eval_data/bank_kb.jsonl",
        "search/eval_data/bank_dev_queries.tsv",
        "search/eval_data/bank_feedback.tsv",
    ),
]


def main() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import numpy as np
    from django.conf import settings

    from mlops.inference.encoders import get_embedder
    from mlops.text import clean_ask
    from search.eval_cache import CachedEmbedder
    from search.evaluation import (
        index_kb,
        isolated_knowledge_base,
        learn_feedback,
        load_feedback,
        load_kb,
        load_queries,
    )
    from search.retrieval import dense_passages, nearest_questions, question_prototypes

    embedder = CachedEmbedder(get_embedder(), ROOT / ".data/search-eval-cache.sqlite")
    out: dict = {"load_average_start": os.getloadavg()}
    for name, kb, queries, feedback in SETS:
        with isolated_knowledge_base():
            ids = index_kb(load_kb(ROOT / kb), embedder=embedder)
            learn_feedback(load_feedback(ROOT / feedback), ids, embedder=embedder)
            texts = list(load_queries(ROOT / queries).values())[:200]
            vectors = embedder.encode(texts)
            asks = embedder.encode([" ".join(clean_ask(t).split()) for t in texts])
            nearest_ms, prototypes_ms = [], []
            for vector, ask in zip(vectors, asks, strict=True):
                dense = dense_passages(vector, 100, embedder.version)
                t0 = time.perf_counter()
                near = nearest_questions(ask, settings.SEARCH_QUESTION_CANDIDATES, embedder.version)
                t1 = time.perf_counter()
                question_prototypes(
                    ask, {d[1] for d in dense} | {a for a, helpful, _ in near if helpful}, embedder.version
                )
                t2 = time.perf_counter()
                nearest_ms.append((t1 - t0) * 1000)
                prototypes_ms.append((t2 - t1) * 1000)
            out[name] = {
                part: {"p50_ms": round(float(np.percentile(v, 50)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2)}
                for part, v in (("nearest_questions", nearest_ms), ("question_prototypes", prototypes_ms))
            }
    out["load_average_end"] = os.getloadavg()
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
