"""Model-quality numbers from recorded outcomes: reliability (ECE), confusion, accuracy, macro-F1,
suggestion helpfulness, and the report row that combines them. Plain arrays, no Django.

The metric definitions are ``mlops.calibration``'s; ``learning.tuning.Outcomes`` is the input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from mlops import calibration
from mlops.calibration import ECE_BINS

from .tuning import Outcomes, _ratio

# Decisions that leave a ticket for a person to route (docs/architecture.md glossary: "needs triage").
NEEDS_TRIAGE_DECISIONS = frozenset({"suggested", "abstained"})


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


def reliability(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = ECE_BINS) -> Reliability:
    """Equal-width reliability bins over [0, 1] and the expected calibration error, as
    ``mlops.calibration`` defines them (``reliability_bins``, ``calibration_error``).

    >>> reliability([0.9, 0.9, 0.2], [True, False, False], n_bins=10).ece
    0.3333333333333333
    """
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=bool)
    bins = [ReliabilityBin(**b) for b in calibration.reliability_bins(conf, hit, n_bins)]
    return Reliability(bins=bins, count=len(conf), ece=calibration.calibration_error(conf, hit, n_bins))


def overall_reliability(outcomes: Outcomes, n_bins: int = ECE_BINS) -> Reliability:
    """Top-label calibration on labeled tickets: confidence of the top team vs. top team == label."""
    mask = outcomes.labeled
    correct = outcomes.top[mask] == outcomes.label[mask]
    return reliability(outcomes.confidence[mask], correct.astype(bool), n_bins)


def team_reliability(outcomes: Outcomes, team: str, n_bins: int = ECE_BINS) -> Reliability:
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


def labels_and_tops(outcomes: Outcomes) -> tuple[list[str], list[str]]:
    """Label and top team of each labeled ticket: what ``mlops.calibration.accuracy`` and ``macro_f1``
    (macro-F1 across every team seen in either) compare."""
    mask = outcomes.labeled
    return [str(y) for y in outcomes.label[mask]], [str(t) for t in outcomes.top[mask]]


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
        accuracy=calibration.accuracy(*labels_and_tops(outcomes)),
        macro_f1=calibration.macro_f1(*labels_and_tops(outcomes)),
        ece=overall_reliability(outcomes).ece,
        auto_route_rate=_ratio(len(auto), len(rows)),
        auto_route_precision=_ratio(sum(1 for r in auto_labeled if r.chosen == r.label), len(auto_labeled)),
        auto_routed_labeled=len(auto_labeled),
        needs_triage_rate=_ratio(sum(1 for r in rows if r.decision in NEEDS_TRIAGE_DECISIONS), len(rows)),
        suggestion_marks=help_.marks,
        helpful_share=help_.helpful_share,
        mrr=help_.mrr,
    )
