"""Pure computations behind threshold tuning and quality reports: numpy and scikit-learn, no Django.

Every function takes plain arrays, so tests compare them with a direct computation and the views,
reports and the ``quality_report`` command share one definition of each number.

Definitions (also shown on the tuning page). For each ticket ``i`` in a window we have the router's
latest prediction, its top team ``top[i]`` (highest calibrated score), its confidence ``conf[i]``
(calibrated score of the top team) and, when a person gave one, the ticket's latest label
``label[i]`` (``None`` when unlabeled). For a team ``t`` and a threshold ``θ``:

* *predicted t*: ``top[i] == t``.
* *routed at θ*: predicted t and ``conf[i] >= θ``; these tickets are auto-routed when the team's
  mode is auto-route (in suggest or off mode, none is).
* *precision*: routed tickets whose label is t, among routed tickets that have a label.
* *recall*: routed tickets whose label is t, among all tickets labeled t.
* *coverage*: routed tickets among predicted-t tickets.
* *wrong*: routed tickets whose label is another team.
* *label count*: tickets labeled t.

Undefined ratios (0/0) are ``None``, never 0, so that "no data" never reads as "bad".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

# The binning of mlops.calibration.expected_calibration_error, so that "ECE" means one thing on every page.
DEFAULT_BINS = 15
DEFAULT_MIN_SUPPORT = 10
# Decisions that leave a ticket for a person to route (docs/architecture.md glossary: "needs triage").
NEEDS_TRIAGE_DECISIONS = frozenset({"suggested", "abstained"})


@dataclass(frozen=True)
class Outcomes:
    """One row per ticket: the prediction that counts for it and its latest label.

    ``scores`` holds each prediction's calibrated score per team (a dict), for per-team reliability.
    """

    ticket_ids: np.ndarray
    top: np.ndarray  # object array of team slugs ("" when the prediction had no scores)
    confidence: np.ndarray  # float
    label: np.ndarray  # object array of team slugs or None
    scores: tuple[dict[str, float], ...] = ()

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[int, str, float, str | None]],
        scores: Iterable[dict[str, float]] | None = None,
    ) -> Outcomes:
        """Build from ``(ticket_id, top, confidence, label)`` rows.

        >>> o = Outcomes.from_rows([(1, "billing", 0.9, "billing"), (2, "orders", 0.4, None)])
        >>> len(o), o.labeled.tolist()
        (2, [True, False])
        """
        rows = list(rows)
        return cls(
            ticket_ids=np.array([r[0] for r in rows], dtype=np.int64),
            top=np.array([r[1] or "" for r in rows], dtype=object),
            confidence=np.array([float(r[2]) for r in rows], dtype=float),
            label=np.array([r[3] for r in rows], dtype=object),
            scores=tuple(scores) if scores is not None else (),
        )

    def __len__(self) -> int:
        return len(self.ticket_ids)

    @cached_property
    def labeled(self) -> np.ndarray:
        return np.array([y is not None for y in self.label], dtype=bool)

    def labeled_as(self, team: str) -> np.ndarray:
        return np.asarray(self.label == team, dtype=bool)

    def teams_seen(self) -> list[str]:
        seen = {t for t in self.top if t} | {y for y in self.label if y is not None}
        return sorted(seen)


def _ratio(num: int | float, den: int | float) -> float | None:
    return float(num) / float(den) if den else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def check_threshold(value: float) -> float:
    """Return ``value`` as a float when it is a threshold (a number in [0, 1]); raise ValueError.

    >>> check_threshold(0.85)
    0.85
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number in [0, 1], got {value!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {value}")
    return value


# --- What-if and per-team metrics -------------------------------------------------------------


@dataclass(frozen=True)
class WhatIf:
    """What threshold ``threshold`` for ``team`` does on the window (see the module docstring)."""

    team: str
    threshold: float
    mode: str
    window: int  # tickets in the window
    predicted: int  # top team == team
    routed: int  # predicted and confidence >= threshold
    auto_routed: int  # routed when mode is auto, else 0
    routed_labeled: int
    correct: int
    wrong: int
    unlabeled: int
    label_count: int
    precision: float | None
    recall: float | None
    f1: float | None
    coverage: float | None
    auto_routed_wrong: int

    def as_dict(self) -> dict:
        return asdict(self)


def what_if(outcomes: Outcomes, team: str, threshold: float, mode: str = "auto") -> WhatIf:
    """Count what ``threshold`` would have done for ``team`` on ``outcomes``.

    >>> o = Outcomes.from_rows([(1, "a", 0.9, "a"), (2, "a", 0.8, "b"), (3, "a", 0.5, None), (4, "b", 0.9, "a")])
    >>> w = what_if(o, "a", 0.7)
    >>> (w.routed, w.correct, w.wrong, w.precision, w.coverage, w.recall)
    (2, 1, 1, 0.5, 0.6666666666666666, 0.5)
    """
    threshold = check_threshold(threshold)
    labeled = outcomes.labeled
    predicted = outcomes.top == team
    routed = predicted & (outcomes.confidence >= threshold)
    is_team = outcomes.labeled_as(team)
    routed_labeled = int((routed & labeled).sum())
    correct = int((routed & is_team).sum())
    label_count = int(is_team.sum())
    precision = _ratio(correct, routed_labeled)
    recall = _ratio(correct, label_count)
    n_routed = int(routed.sum())
    auto = mode == "auto"
    wrong = routed_labeled - correct
    return WhatIf(
        team=team,
        threshold=threshold,
        mode=mode,
        window=len(outcomes),
        predicted=int(predicted.sum()),
        routed=n_routed,
        auto_routed=n_routed if auto else 0,
        routed_labeled=routed_labeled,
        correct=correct,
        wrong=wrong,
        unlabeled=n_routed - routed_labeled,
        label_count=label_count,
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        coverage=_ratio(n_routed, int(predicted.sum())),
        auto_routed_wrong=wrong if auto else 0,
    )


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    precision: float | None
    recall: float | None
    coverage: float | None
    routed: int
    routed_labeled: int


def precision_recall_points(outcomes: Outcomes, team: str) -> list[CurvePoint]:
    """The router's precision-recall curve for ``team``: one point per distinct confidence of a
    labeled predicted-``team`` ticket (the only thresholds at which precision or recall change),
    lowest threshold first. Each point equals ``what_if(outcomes, team, point.threshold)``."""
    predicted = outcomes.top == team
    conf = outcomes.confidence[predicted]
    order = np.argsort(conf, kind="stable")
    conf = conf[order]
    labeled = outcomes.labeled[predicted][order]
    hits = outcomes.labeled_as(team)[predicted][order]
    candidates = np.unique(conf[labeled])
    if not len(candidates):
        return []

    def from_index(values: np.ndarray) -> np.ndarray:
        # from_index(v)[k] = v[k:].sum(), for every k including len(v)
        return np.concatenate([np.cumsum(values[::-1])[::-1], [0]])

    start = np.searchsorted(conf, candidates, side="left")
    routed = len(conf) - start
    routed_labeled = from_index(labeled.astype(int))[start]
    correct = from_index(hits.astype(int))[start]
    label_count = int(outcomes.labeled_as(team).sum())
    return [
        CurvePoint(
            threshold=float(theta),
            precision=_ratio(int(c), int(n_lab)),
            recall=_ratio(int(c), label_count),
            coverage=_ratio(int(n), len(conf)),
            routed=int(n),
            routed_labeled=int(n_lab),
        )
        for theta, n, n_lab, c in zip(candidates, routed, routed_labeled, correct, strict=True)
    ]


@dataclass(frozen=True)
class Suggestion:
    """Outcome of :func:`suggest_threshold`. ``threshold`` is None when no threshold qualifies;
    ``message`` then says why, with the best precision reached."""

    team: str
    target: float
    min_support: int
    threshold: float | None
    precision: float | None
    recall: float | None
    coverage: float | None
    support: int
    message: str
    best_precision: float | None = None
    best_threshold: float | None = None

    @property
    def ok(self) -> bool:
        return self.threshold is not None

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def suggest_threshold(
    outcomes: Outcomes, team: str, target: float, min_support: int = DEFAULT_MIN_SUPPORT
) -> Suggestion:
    """The smallest threshold whose precision for ``team`` is at least ``target``, measured on at
    least ``min_support`` labeled routed tickets.

    Precision is not monotonic in the threshold, so every candidate (each distinct confidence of a
    labeled predicted-``team`` ticket) is checked from the lowest up; the first that qualifies wins.

    >>> o = Outcomes.from_rows([(1, "a", 0.9, "a"), (2, "a", 0.8, "b"), (3, "a", 0.7, "a")])
    >>> suggest_threshold(o, "a", 0.95, min_support=1).threshold
    0.9
    """
    target = float(target)
    if math.isnan(target) or not 0.0 < target <= 1.0:
        raise ValueError(f"target precision must be within (0, 1], got {target}")
    if min_support < 1:
        raise ValueError(f"minimum support must be at least 1, got {min_support}")
    base = dict(team=team, target=target, min_support=min_support)
    points = precision_recall_points(outcomes, team)
    if not points:
        return Suggestion(
            **base,
            threshold=None,
            precision=None,
            recall=None,
            coverage=None,
            support=0,
            message=f"Team {team!r} has no labeled predictions in this window: there is nothing to measure "
            "precision on. Label some of its tickets first.",
        )
    supported = [p for p in points if p.routed_labeled >= min_support]
    if not supported:
        most = max(p.routed_labeled for p in points)
        return Suggestion(
            **base,
            threshold=None,
            precision=None,
            recall=None,
            coverage=None,
            support=most,
            message=f"Team {team!r} has only {most} labeled predictions in this window; at least "
            f"{min_support} are needed to trust a precision.",
        )
    for p in supported:
        if p.precision is not None and p.precision >= target:
            return Suggestion(
                **base,
                threshold=p.threshold,
                precision=p.precision,
                recall=p.recall,
                coverage=p.coverage,
                support=p.routed_labeled,
                best_precision=p.precision,
                best_threshold=p.threshold,
                message=f"θ = {p.threshold:.3f} reaches precision {p.precision:.3f} "
                f"on {p.routed_labeled} labeled tickets.",
            )
    # Highest precision; on a tie the lowest threshold (it routes more).
    best = max(supported, key=lambda p: (p.precision or 0.0, -p.threshold))
    return Suggestion(
        **base,
        threshold=None,
        precision=None,
        recall=None,
        coverage=None,
        support=best.routed_labeled,
        best_precision=best.precision,
        best_threshold=best.threshold,
        message=f"No threshold reaches precision {target:.3f} for team {team!r} with at least {min_support} "
        f"labeled tickets (best is {best.precision:.3f} at θ = {best.threshold:.3f}, "
        f"on {best.routed_labeled} labeled tickets).",
    )


# --- Calibration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None

    @property
    def gap(self) -> float | None:
        if self.count == 0 or self.mean_confidence is None or self.accuracy is None:
            return None
        return abs(self.accuracy - self.mean_confidence)


@dataclass(frozen=True)
class Reliability:
    bins: list[ReliabilityBin]
    count: int
    ece: float | None

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "ece": self.ece,
            "bins": [{**asdict(b), "gap": b.gap} for b in self.bins],
        }


def reliability(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = DEFAULT_BINS) -> Reliability:
    """Equal-width reliability bins over [0, 1] and the expected calibration error.

    Bin ``b`` holds confidences in ``[b/n, (b+1)/n)``; the last bin also holds 1.0. The default
    ``n_bins`` is 15, as in ``mlops.calibration.expected_calibration_error``.
    ``ECE = Σ_b (n_b / n) · |accuracy_b − mean confidence_b|``.

    >>> reliability([0.9, 0.9, 0.2], [True, False, False], n_bins=10).ece
    0.3333333333333333
    """
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=bool)
    index = np.clip(np.floor(conf * n_bins).astype(int), 0, n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        in_bin = index == b
        count = int(in_bin.sum())
        mean_conf = float(conf[in_bin].mean()) if count else None
        accuracy = float(hit[in_bin].mean()) if count else None
        if count:
            ece += count / len(conf) * abs(accuracy - mean_conf)
        bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, count, mean_conf, accuracy))
    return Reliability(bins=bins, count=len(conf), ece=float(ece) if len(conf) else None)


def overall_reliability(outcomes: Outcomes, n_bins: int = DEFAULT_BINS) -> Reliability:
    """Top-label calibration on labeled tickets: confidence of the top team vs. top team == label."""
    mask = outcomes.labeled
    correct = outcomes.top[mask] == outcomes.label[mask]
    return reliability(outcomes.confidence[mask], correct.astype(bool), n_bins)


def team_reliability(outcomes: Outcomes, team: str, n_bins: int = DEFAULT_BINS) -> Reliability:
    """One-vs-rest calibration of ``team``'s calibrated score on every labeled ticket: the score the
    prediction gave ``team`` vs. whether the label is ``team``. Needs ``outcomes.scores``."""
    if len(outcomes.scores) != len(outcomes):
        raise ValueError("team reliability needs the per-team scores of each prediction")
    mask = outcomes.labeled
    probs = [float(outcomes.scores[i].get(team, 0.0)) for i in np.flatnonzero(mask)]
    return reliability(probs, outcomes.labeled_as(team)[mask], n_bins)


# --- Confusion matrix and report metrics ------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """``matrix[i][j]``: labeled tickets whose label is ``classes[i]`` and top team ``classes[j]``."""

    classes: list[str]
    matrix: list[list[int]]

    def as_dict(self) -> dict:
        return asdict(self)


def confusion(outcomes: Outcomes, classes: Sequence[str] | None = None) -> Confusion:
    from sklearn.metrics import confusion_matrix

    mask = outcomes.labeled
    y_true = [str(y) for y in outcomes.label[mask]]
    y_pred = [str(t) for t in outcomes.top[mask]]
    names = sorted(set(classes or []) | set(y_true) | set(y_pred))
    if not y_true:
        return Confusion(classes=names, matrix=[[0] * len(names) for _ in names])
    matrix = confusion_matrix(y_true, y_pred, labels=names)
    return Confusion(classes=names, matrix=matrix.astype(int).tolist())


def accuracy(outcomes: Outcomes) -> float | None:
    mask = outcomes.labeled
    return _ratio(int((outcomes.top[mask] == outcomes.label[mask]).sum()), int(mask.sum()))


def macro_f1(outcomes: Outcomes) -> float | None:
    """Macro-averaged F1 of top team vs. label over labeled tickets, across every team seen in
    either (a team predicted but never the label counts with F1 = 0)."""
    from sklearn.metrics import f1_score

    mask = outcomes.labeled
    if not mask.any():
        return None
    y_true = [str(y) for y in outcomes.label[mask]]
    y_pred = [str(t) for t in outcomes.top[mask]]
    labels = sorted(set(y_true) | set(y_pred))
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


@dataclass(frozen=True)
class Helpfulness:
    marks: int
    helpful: int
    helpful_share: float | None
    tickets: int
    mrr: float | None


def helpfulness(marks: Iterable[tuple[int, int | None, bool]]) -> Helpfulness:
    """Suggestion helpfulness from ``(ticket_id, rank, helpful)`` marks (one per ticket and article).

    ``helpful_share`` = helpful marks / all marks. ``mrr`` = mean over tickets with at least one
    mark of 1 / (best rank among its helpful marks), 0 for a ticket with none helpful; ranks start
    at 1, and marks without a rank count for the share but not for the MRR.

    >>> helpfulness([(1, 2, True), (1, 1, False), (2, 1, False)]).mrr
    0.25
    """
    marks = list(marks)
    by_ticket: dict[int, list[tuple[int | None, bool]]] = {}
    for ticket_id, rank, is_helpful in marks:
        by_ticket.setdefault(ticket_id, []).append((rank, bool(is_helpful)))
    reciprocal = []
    for ticket_marks in by_ticket.values():
        ranked = [(r, h) for r, h in ticket_marks if r is not None]
        if not ranked:
            continue
        helpful_ranks = [r for r, h in ranked if h]
        reciprocal.append(1.0 / min(helpful_ranks) if helpful_ranks else 0.0)
    helpful_count = sum(1 for _, _, h in marks if h)
    return Helpfulness(
        marks=len(marks),
        helpful=helpful_count,
        helpful_share=_ratio(helpful_count, len(marks)),
        tickets=len(reciprocal),
        mrr=float(np.mean(reciprocal)) if reciprocal else None,
    )


@dataclass(frozen=True)
class DecisionRow:
    """One stored prediction as the report needs it: what the router did and what the label says."""

    ticket_id: int
    top: str
    confidence: float
    decision: str  # auto_routed, suggested, abstained
    chosen: str | None  # team the ticket was routed or suggested to
    label: str | None


@dataclass(frozen=True)
class QualityRow:
    predictions: int
    labeled: int
    accuracy: float | None
    macro_f1: float | None
    ece: float | None
    auto_route_rate: float | None
    auto_route_precision: float | None
    auto_routed_labeled: int
    needs_triage_rate: float | None
    suggestion_marks: int
    helpful_share: float | None
    mrr: float | None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}


def quality(rows: Sequence[DecisionRow], marks: Iterable[tuple[int, int | None, bool]] = ()) -> QualityRow:
    """The report's numbers for a set of stored predictions (one model version and week, usually).

    * accuracy, macro-F1, ECE: top team vs. latest label, on labeled predictions.
    * auto-route rate: predictions whose decision was auto-routed, among all; its precision: those
      whose routed team is the label, among auto-routed predictions with a label.
    * needs-triage rate: predictions that left the ticket for a person (suggested or abstained).
    * helpfulness: :func:`helpfulness` over the marks on these predictions' tickets.
    """
    outcomes = Outcomes.from_rows((r.ticket_id, r.top, r.confidence, r.label) for r in rows)
    auto = [r for r in rows if r.decision == "auto_routed"]
    auto_labeled = [r for r in auto if r.label is not None]
    help_ = helpfulness(marks)
    return QualityRow(
        predictions=len(rows),
        labeled=int(outcomes.labeled.sum()),
        accuracy=accuracy(outcomes),
        macro_f1=macro_f1(outcomes),
        ece=overall_reliability(outcomes).ece,
        auto_route_rate=_ratio(len(auto), len(rows)),
        auto_route_precision=_ratio(sum(1 for r in auto_labeled if r.chosen == r.label), len(auto_labeled)),
        auto_routed_labeled=len(auto_labeled),
        needs_triage_rate=_ratio(sum(1 for r in rows if r.decision in NEEDS_TRIAGE_DECISIONS), len(rows)),
        suggestion_marks=help_.marks,
        helpful_share=help_.helpful_share,
        mrr=help_.mrr,
    )
