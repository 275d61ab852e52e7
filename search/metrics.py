"""Ranking metrics over article ids: MRR@k, NDCG@k (graded, linear gain) and Recall@k."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def mrr_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Reciprocal rank of the first relevant article within the top ``k``, else 0.

    >>> mrr_at_k(["a", "b", "c"], {"b": 1})
    0.5
    """
    for i, doc in enumerate(ranking[:k], start=1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / i
    return 0.0


def ndcg_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Normalised discounted cumulative gain with gain = relevance grade (as trec_eval).

    >>> round(ndcg_at_k(["x", "a"], {"a": 1}), 4)
    0.6309
    """
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 1) for i, doc in enumerate(ranking[:k], start=1))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    """Share of relevant articles found in the top ``k``.

    >>> recall_at_k(["a", "b"], {"a": 1, "z": 2})
    0.5
    """
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    if not wanted:
        return 0.0
    return len(wanted & set(ranking[:k])) / len(wanted)


def summarise(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean MRR@10, NDCG@10 and Recall@100 over the queries of ``rankings`` that have a relevant article."""
    qids = [q for q in rankings if any(g > 0 for g in qrels.get(q, {}).values())]
    if not qids:
        return {"mrr@10": 0.0, "ndcg@10": 0.0, "recall@100": 0.0, "queries": 0}
    return {
        "mrr@10": sum(mrr_at_k(rankings[q], qrels[q]) for q in qids) / len(qids),
        "ndcg@10": sum(ndcg_at_k(rankings[q], qrels[q]) for q in qids) / len(qids),
        "recall@100": sum(recall_at_k(rankings[q], qrels[q]) for q in qids) / len(qids),
        "queries": len(qids),
    }
