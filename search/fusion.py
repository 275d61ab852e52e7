"""The served ranking: a weighted sum of the stages' per-query standardised scores.

A cross-encoder does not always beat the bi-encoder it reranks (on one bank help centre, MaxP dense
scored MRR@10 0.89 and reranking 0.86), so the app never trusts one stage blindly. Each article gets
its dense (MaxP cosine), hybrid (MaxP reciprocal-rank-fusion) and rerank (MaxP cross-encoder logit)
scores; each is standardised over the query's candidate articles and the final score is
``w_dense·z_dense + w_hybrid·z_hybrid + w_rerank·z_rerank``. The weights are fitted on labeled
queries (``fit_search_weights``) or agents' helpful marks: where the reranker hurts, its fitted weight
falls towards 0 and the ranking falls back to the dense/hybrid stages.

Which stage is worth trusting depends on the query's length: ms-marco rerankers were trained on
short web queries and read a one-line subject well, while a long, chatty ticket body is where the
bi-encoder's MaxP and the lexical stage hold up better. A ``FusionPolicy`` therefore keeps two
weight vectors, one for queries of at most ``short_max_words`` words and one for longer ones (a
single vector when ``short_max_words`` is ``None``). ``fit_policy`` fits both on one or several
labeled sets at once, maximising the *worst* set's margin over its own best single stage, so that
the served ranking is not bought on one kind of query at the expense of another.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .metrics import summarise

# ``feedback`` is dense MaxP over an article's passages and its learned questions (agents' marks),
# lowered near its not-helpful ones: the dense stage itself where nothing was learned.
BASE_STAGES = ("dense", "hybrid", "rerank")
STAGES = (*BASE_STAGES, "feedback")
DEFAULT_WEIGHTS_FILE = Path(__file__).resolve().parent / "default_weights.json"
# Used only when neither a fitted row nor the shipped file exists.
FALLBACK_WEIGHTS = {"feedback": 0.4, "hybrid": 0.2, "rerank": 0.4}
DEFAULT_SHORT_MAX_WORDS = 12

StageScores = Mapping[str, Mapping[str, float]]  # stage -> {article key: score}


def normalise_weights(weights: Mapping[str, float], stages: Sequence[str] = STAGES) -> dict[str, float]:
    """Weights restricted to ``stages``, non-negative and summing to 1.

    >>> normalise_weights({"dense": 1, "rerank": 3}, ("dense", "hybrid"))
    {'dense': 1.0, 'hybrid': 0.0}
    """
    clipped = {s: max(0.0, float(weights.get(s, 0.0))) for s in stages}
    total = sum(clipped.values())
    if total <= 0:
        return {s: 1.0 / len(stages) for s in stages}
    return {s: v / total for s, v in clipped.items()}


def standardise(scores: Mapping[str, float], candidates: Sequence[str]) -> dict[str, float]:
    """z-scores over ``candidates``; a candidate the stage did not score gets the stage's lowest score."""
    if not scores:
        return {c: 0.0 for c in candidates}
    floor = min(scores.values())
    values = [scores.get(c, floor) for c in candidates]
    mean = statistics.fmean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    if std == 0:
        return {c: 0.0 for c in candidates}
    return {c: (v - mean) / std for c, v in zip(candidates, values, strict=True)}


def candidate_articles(stage_scores: StageScores, feedback_weighed: bool = True) -> list[str]:
    """The articles a query's final ranking is over: every stage's, except that an article only a
    learned question found is one only while the ``feedback`` stage carries weight.

    A policy that gives ``feedback`` no weight (the guard's "as if nothing was learned") must rank
    exactly as if nothing was learned: articles only learned questions brought in would otherwise
    join the candidates and shift every stage's z-scores.

    >>> candidate_articles({"dense": {"a": 0.9}, "feedback": {"a": 0.9, "b": 0.8}}, feedback_weighed=False)
    ['a']
    """
    every = sorted({c for scores in stage_scores.values() for c in scores})
    if feedback_weighed:
        return every
    others = sorted({c for s, scores in stage_scores.items() if s != "feedback" for c in scores})
    return others or every


def combine(stage_scores: StageScores, weights: Mapping[str, float]) -> dict[str, float]:
    """Final score per candidate article (``candidate_articles``: the union of the stages' articles).

    Stages that produced nothing (reranking off) drop out and the other weights are rescaled.

    >>> s = combine({"dense": {"a": 0.9, "b": 0.5}, "hybrid": {"a": 0.01, "b": 0.03}, "rerank": {}},
    ...             {"dense": 0.5, "hybrid": 0.25, "rerank": 0.25})
    >>> max(s, key=s.get)
    'a'
    """
    present = [s for s in STAGES if stage_scores.get(s)]
    if not present:
        return {c: 0.0 for c in candidate_articles(stage_scores)}
    w = normalise_weights(weights, present)
    candidates = candidate_articles(stage_scores, feedback_weighed=w.get("feedback", 0.0) > 0)
    total = {c: 0.0 for c in candidates}
    for stage in present:
        if w[stage] == 0:
            continue
        for c, z in standardise(stage_scores[stage], candidates).items():
            total[c] += w[stage] * z
    return total


def rank(scores: Mapping[str, float]) -> list[str]:
    """Keys by descending score, ties broken by key so rankings are reproducible."""
    return sorted(scores, key=lambda c: (-scores[c], c))


def query_words(text: str) -> int:
    """The length a ``FusionPolicy`` reads: whitespace-separated words of the query as searched."""
    return len(text.split())


@dataclass(frozen=True)
class FusionPolicy:
    """Stage weights by query length: ``short`` for queries of at most ``short_max_words`` words,
    ``long`` for the others; one vector for every query when ``short_max_words`` is ``None``.

    >>> p = FusionPolicy.from_json({"short_max_words": 12, "short": {"rerank": 1}, "long": {"dense": 1}})
    >>> p.for_query("card declined")["rerank"], p.for_words(40)["feedback"]  # dense read as learning
    (1.0, 1.0)
    """

    short: dict[str, float]
    long: dict[str, float]
    short_max_words: int | None = None
    # For queries the cross-encoder did not read (SEARCH_RERANK): fitted without the rerank stage
    # rather than this policy's vectors rescaled, which would hand the rerank weight to the others.
    unreranked: FusionPolicy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "short", normalise_weights(self.short))
        object.__setattr__(self, "long", normalise_weights(self.long))
        if self.short_max_words is not None and (not isinstance(self.short_max_words, int) or self.short_max_words < 1):
            raise ValueError(f"short_max_words must be a positive integer or null, got {self.short_max_words!r}")

    @classmethod
    def single(cls, weights: Mapping[str, float]) -> FusionPolicy:
        return cls(short=dict(weights), long=dict(weights), short_max_words=None)

    @classmethod
    def from_json(cls, data: Mapping) -> FusionPolicy:
        """A policy from ``{"short_max_words", "short", "long"}`` or one flat vector ``{"dense": w, ...}``.

        A policy that names no ``feedback`` weight (written before learned questions existed, or
        fitted where nothing was learned) puts its dense weight there (``learning``): it ranks the
        same until agents' marks exist, and uses them from then on.
        """
        if not isinstance(data, Mapping):
            raise ValueError("fusion weights must be a JSON object")
        if "short" in data or "long" in data:
            if not (isinstance(data.get("short"), Mapping) and isinstance(data.get("long"), Mapping)):
                raise ValueError('a length-gated policy needs both "short" and "long" weight objects')
            vectors = [data["short"], data["long"]]
            policy = cls(
                short=dict(data["short"]), long=dict(data["long"]), short_max_words=data.get("short_max_words")
            )
        else:
            vectors = [{k: v for k, v in data.items() if k != "unreranked"}]
            policy = cls.single(vectors[0])
        for vector in vectors:
            unknown = set(vector) - set(STAGES) - {"unreranked"}
            if unknown:
                raise ValueError(f"unknown fusion stage(s) {sorted(unknown)}; stages are {list(STAGES)}")
        if not any("feedback" in v for v in vectors):
            policy = policy.learning()
        if isinstance(data.get("unreranked"), Mapping):
            policy = replace(policy, unreranked=cls.from_json(data["unreranked"]))
        return policy

    def learning(self) -> FusionPolicy:
        """The same policy with its dense weight on the ``feedback`` stage (dense over passages and
        learned questions): identical rankings while nothing is learned, and agents' marks count from
        the first one.

        >>> FusionPolicy.single({"dense": 0.6, "rerank": 0.4}).learning().long["feedback"]
        0.6
        """

        def move(w: Mapping[str, float]) -> dict[str, float]:
            return {**w, "dense": 0.0, "feedback": w.get("feedback", 0.0) + w.get("dense", 0.0)}

        unreranked = self.unreranked.learning() if self.unreranked is not None else None
        return FusionPolicy(move(self.short), move(self.long), self.short_max_words, unreranked)

    def unlearned(self) -> FusionPolicy:
        """The same policy with its feedback weight back on dense: the ranking as if nothing was learned."""

        def move(w: Mapping[str, float]) -> dict[str, float]:
            return {**w, "feedback": 0.0, "dense": w.get("dense", 0.0) + w.get("feedback", 0.0)}

        unreranked = self.unreranked.unlearned() if self.unreranked is not None else None
        return FusionPolicy(move(self.short), move(self.long), self.short_max_words, unreranked)

    def to_json(self) -> dict:
        if self.short_max_words is None:
            data: dict = dict(self.long)
        else:
            data = {"short_max_words": self.short_max_words, "short": dict(self.short), "long": dict(self.long)}
        if self.unreranked is not None:
            data["unreranked"] = self.unreranked.to_json()
        return data

    def regime(self, words: int) -> str:
        """``short`` or ``long`` for a gated policy, ``all`` for a single vector."""
        if self.short_max_words is None:
            return "all"
        return "short" if words <= self.short_max_words else "long"

    def for_words(self, words: int) -> dict[str, float]:
        return dict(self.short if self.regime(words) == "short" else self.long)

    def for_query(self, text: str) -> dict[str, float]:
        return self.for_words(query_words(text))

    def describe(self) -> str:
        def fmt(w: Mapping[str, float]) -> str:
            return ", ".join(f"{k}={v:.2f}" for k, v in w.items())

        text = (
            fmt(self.long)
            if self.short_max_words is None
            else (f"≤{self.short_max_words} words: {fmt(self.short)}; longer: {fmt(self.long)}")
        )
        return text if self.unreranked is None else f"{text}; not reranked: {self.unreranked.describe()}"


Weights = Mapping[str, float] | FusionPolicy


def weights_for(weights: Weights, words: int | None, stage_scores: StageScores | None = None) -> dict[str, float]:
    """The weight vector ``weights`` (a vector or a policy) gives a query of ``words`` words; with the
    query's ``stage_scores``, a policy's ``unreranked`` vectors where the cross-encoder did not read it."""
    if isinstance(weights, FusionPolicy):
        if weights.unreranked is not None and stage_scores is not None and not stage_scores.get("rerank"):
            weights = weights.unreranked
        if words is None:
            if weights.short_max_words is not None:
                raise ValueError("a length-gated fusion policy needs the query's length")
            return dict(weights.long)
        return weights.for_words(words)
    return dict(weights)


def stage_rankings(stage_scores: StageScores, weights: Mapping[str, float]) -> dict[str, list[str]]:
    """Article rankings of every stage and of the final combination for one query.

    ``rerank`` puts the articles the cross-encoder scored first and the others after them in hybrid
    order, so that its Recall@100 counts the same candidate set as ``hybrid``.
    """
    hybrid = rank(stage_scores.get("hybrid", {}))
    reranked = rank(stage_scores.get("rerank", {}))
    seen = set(reranked)
    return {
        "dense": rank(stage_scores.get("dense", {})),
        "hybrid": hybrid,
        "rerank": reranked + [c for c in hybrid if c not in seen],
        "feedback": rank(stage_scores.get("feedback") or stage_scores.get("dense", {})),
        "final": rank(combine(stage_scores, weights)),
    }


def stage_metrics(
    features: Mapping[str, StageScores],
    qrels: Mapping[str, Mapping[str, int]],
    weights: Weights,
    words: Mapping[str, int | None] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every stage and of the final ranking; ``words`` (query lengths) serve a policy."""
    words = words or {}
    per_query = {q: stage_rankings(f, weights_for(weights, words.get(q), f)) for q, f in features.items()}
    return {stage: summarise({q: r[stage] for q, r in per_query.items()}, qrels) for stage in (*STAGES, "final")}


def load_weights_file(path: str | Path) -> FusionPolicy:
    """A policy from a JSON file: a ``fit_search_weights --output`` file or bare weights."""
    try:
        data = json.loads(Path(path).read_text())
        return FusionPolicy.from_json(data.get("weights", data) if isinstance(data, dict) else data)
    except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a fusion weights file ({exc})") from None


def active_weights() -> tuple[FusionPolicy, str]:
    """The fusion policy the app serves with, and where it came from.

    ``SEARCH_WEIGHTS_FILE`` wins, then the newest ``FusionWeights`` row, then the shipped default.
    """
    from django.conf import settings

    from .models import FusionWeights

    override = settings.SEARCH_WEIGHTS_FILE
    if override:
        return load_weights_file(override), f"file:{override}"
    row = FusionWeights.objects.order_by("-created_at", "-id").first()
    if row is not None:
        return FusionPolicy.from_json(row.weights), f"{row.source}#{row.pk}"
    if DEFAULT_WEIGHTS_FILE.exists():
        return load_weights_file(DEFAULT_WEIGHTS_FILE), "default"
    return FusionPolicy.single(FALLBACK_WEIGHTS), "fallback"
