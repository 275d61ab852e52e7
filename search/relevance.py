"""How likely a suggested article is to help, and the cutoff below which "no article fits".

Every ranking has a first article, relevant or not: a ticket about something the help centre does not
cover still gets five suggestions, and five weak ones cost an agent more than a plain "no article
fits". ``RelevanceModel`` turns a candidate's stage scores into a probability that it is relevant: a
logistic regression over the raw scores (dense cosine and how far it is below the query's best,
feedback, reranker logit where it ran) and the candidate's rank in the final ranking. It is
fitted on labeled evaluation sets (``fit_relevance_model``, never a test split) and shipped in
``search/default_relevance.json``; the cutoff is chosen on the same sets. At serving time it is a dot
product: nothing is imported that a web process would not already have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .fusion import StageScores, combine, rank

DEFAULT_RELEVANCE_FILE = Path(__file__).resolve().parent / "default_relevance.json"
# Raw scores, not the final z-scores: those depend on how many candidates a knowledge base yields.
FEATURES = ("dense", "dense_gap", "feedback", "rank", "rerank", "reranked")
TOP_K = 5  # candidates per query the model is fitted on and applied to: the suggestions shown


def candidate_features(stage_scores: StageScores, final: Mapping[str, float], k: int = TOP_K) -> list[tuple]:
    """(article, feature vector) of the ``k`` best candidates of one query, best first."""
    ranked = rank(final)[:k]
    if not ranked:
        return []
    dense = stage_scores.get("dense") or {}
    feedback = stage_scores.get("feedback") or dense
    rerank = stage_scores.get("rerank") or {}
    floor = min(dense.values()) if dense else 0.0
    best_dense = max(dense.values()) if dense else 0.0
    rows = []
    for position, article in enumerate(ranked, start=1):
        rows.append(
            (
                article,
                [
                    dense.get(article, floor),
                    best_dense - dense.get(article, floor),
                    feedback.get(article, dense.get(article, floor)),
                    float(position),
                    rerank.get(article, 0.0),
                    1.0 if article in rerank else 0.0,
                ],
            )
        )
    return rows


@dataclass(frozen=True)
class RelevanceModel:
    coef: Sequence[float]
    intercept: float
    cutoff: float  # a suggestion below this probability is not shown; none above: "no article fits"
    fitted_on: str = ""
    metrics: dict = field(default_factory=dict)

    def probability(self, vector: Sequence[float]) -> float:
        z = self.intercept + sum(c * x for c, x in zip(self.coef, vector, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def score(self, stage_scores: StageScores, final: Mapping[str, float], k: int = TOP_K) -> dict[str, float]:
        """The relevance probability of each of the ``k`` best candidates."""
        return {a: self.probability(v) for a, v in candidate_features(stage_scores, final, k)}

    def to_json(self) -> dict:
        return {
            "features": list(FEATURES),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "cutoff": self.cutoff,
            "fitted_on": self.fitted_on,
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> RelevanceModel:
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError(f"a relevance model over {data.get('features')}, expected {list(FEATURES)}")
        return cls(
            coef=[float(c) for c in data["coef"]],
            intercept=float(data["intercept"]),
            cutoff=float(data["cutoff"]),
            fitted_on=str(data.get("fitted_on", "")),
            metrics=dict(data.get("metrics", {})),
        )


def load_relevance_model(path: Path = DEFAULT_RELEVANCE_FILE) -> RelevanceModel | None:
    """The shipped model, or ``None`` when there is none (every suggestion is then shown)."""
    if not path.exists():
        return None
    return RelevanceModel.from_json(json.loads(path.read_text()))


def score_result(model: RelevanceModel | None, result, k: int = TOP_K) -> dict[int, float]:
    """The relevance probability of the ``k`` best articles of a ``retrieval.SearchResult``, by article
    id; empty without a model (every suggestion is then shown)."""
    if model is None or not result.articles:
        return {}
    keyed = {s: {str(a): v for a, v in scores.items()} for s, scores in result.stage_scores.items()}
    scored = model.score(keyed, {str(h.article_id): h.final for h in result.articles}, k)
    return {int(a): p for a, p in scored.items()}


def cutoff_metrics(
    probabilities: Mapping[str, Mapping[str, float]],
    finals: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    cutoff: float,
) -> dict[str, float]:
    """What the cutoff does to the first suggestion shown, over every query.

    * ``coverage``: share of queries that have a relevant article which get a suggestion;
    * ``precision``: share of queries given a suggestion whose first one is relevant;
    * ``no_answer_silent``: share of queries with no relevant article that get no suggestion.
    """
    answerable = [q for q in finals if any(g > 0 for g in qrels.get(q, {}).values())]
    no_answer = [q for q in finals if q not in set(answerable)]

    def shown(q: str) -> bool:
        return any(p >= cutoff for p in probabilities.get(q, {}).values())

    given = [q for q in finals if shown(q)]
    first_relevant = [q for q in given if finals[q] and qrels.get(q, {}).get(finals[q][0], 0) > 0]
    return {
        "cutoff": cutoff,
        "coverage": sum(shown(q) for q in answerable) / len(answerable) if answerable else 0.0,
        "precision": len(first_relevant) / len(given) if given else 0.0,
        "no_answer_silent": sum(not shown(q) for q in no_answer) / len(no_answer) if no_answer else None,
        "no_answer_queries": len(no_answer),
    }


def apply_model(
    model: RelevanceModel, features: Mapping[str, StageScores], weights_of
) -> tuple[dict[str, dict[str, float]], dict[str, list[str]]]:
    """Each query's candidate probabilities and final ranking; ``weights_of(qid)`` gives its vector."""
    probabilities, finals = {}, {}
    for q, f in features.items():
        final = combine(f, weights_of(q))
        probabilities[q] = model.score(f, final)
        finals[q] = rank(final)
    return probabilities, finals


def fit_relevance_model(
    sets: Sequence[tuple[str, Mapping[str, StageScores], Mapping[str, Mapping[str, int]], object]],
    *,
    min_coverage: float = 0.9,
) -> RelevanceModel:
    """Logistic regression on the top candidates of every query of ``sets`` (name, features, qrels,
    ``weights_of``), and the highest cutoff that still gives a suggestion to ``min_coverage`` of the
    queries that have a relevant article on every set together."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x, y = [], []
    for _, features, qrels, weights_of in sets:
        for q, f in features.items():
            for article, vector in candidate_features(f, combine(f, weights_of(q))):
                x.append(vector)
                y.append(1 if qrels.get(q, {}).get(article, 0) > 0 else 0)
    regression = LogisticRegression(C=1.0, max_iter=2000).fit(np.array(x), np.array(y))
    model = RelevanceModel(list(map(float, regression.coef_[0])), float(regression.intercept_[0]), 0.0)
    tops = []
    for _, features, qrels, weights_of in sets:
        probabilities, finals = apply_model(model, features, weights_of)
        tops += [max(probabilities[q].values()) for q in features if any(g > 0 for g in qrels.get(q, {}).values())]
    cutoff = float(np.quantile(tops, 1 - min_coverage)) if tops else 0.0
    names = ", ".join(name for name, *_ in sets)
    return RelevanceModel(model.coef, model.intercept, round(cutoff, 4), fitted_on=names)
