"""Time the suggestions for one ticket without the reranker: ``python bench/bench_search_suggest.py``.

The demo help centre is indexed into throw-away tables (as ``evaluate_search`` does; passage vectors
from the evaluation cache when present), then ``retrieval.search`` runs for each demo test ticket with
the packaged embedder (query vectors are *not* cached: embedding is part of what is timed) and the
reranker off, as ``SEARCH_RERANK=auto`` serves on a CPU without native bfloat16. Prints and writes
(``bench/results/bench_search_suggest.json``) p50/p95 of the whole search and of each part.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TICKETS = int(os.environ.get("BENCH_SUGGEST_TICKETS", "100"))


def main() -> dict:
    import django

    django.setup()
    import numpy as np

    from mlops.inference.encoders import cpu_computes_bfloat16, get_embedder
    from search.eval_cache import CachedEmbedder
    from search.evaluation import default_cache_path, index_kb, isolated_knowledge_base, load_kb, load_queries
    from search.retrieval import search

    root = Path(__file__).resolve().parent.parent
    rows = load_kb(root / "triage" / "demo_data" / "articles.jsonl")
    queries = list(load_queries(root / "search" / "eval_data" / "demo_test_queries.tsv").values())[:TICKETS]
    embedder = get_embedder()
    timings: dict[str, list[float]] = {}
    with isolated_knowledge_base():
        index_kb(rows, embedder=CachedEmbedder(embedder, default_cache_path()))
        search(queries[0], embedder=embedder, rerank_depth=0)  # warm-up: first query loads what it needs
        for text in queries:
            started = time.perf_counter()
            result = search(text, embedder=embedder, rerank_depth=0)
            timings.setdefault("wall", []).append((time.perf_counter() - started) * 1000)
            for part, ms in result.timings_ms.items():
                timings.setdefault(part, []).append(ms)
    summary = {
        part: {"p50_ms": round(float(np.percentile(v, 50)), 1), "p95_ms": round(float(np.percentile(v, 95)), 1)}
        for part, v in timings.items()
    }
    report = {
        "tickets": len(queries),
        "reranker": "off",
        "cpu": platform.processor() or platform.machine(),
        "cpu_computes_bfloat16": cpu_computes_bfloat16(),
        "load_average": os.getloadavg(),
        "timings": summary,
    }
    out = root / "bench" / "results" / "bench_search_suggest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
