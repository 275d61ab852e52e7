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
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from mlops import calibration
from mlops.calibration import MIN_THRESHOLD_SUPPORT


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

    def for_class(self, team: str) -> ClassOutcomes:
        """``team``'s candidates: the tickets whose top team it is."""
        predicted = self.top == team
        is_team = self.labeled_as(team)
        return ClassOutcomes(
            name=team,
            confidence=self.confidence[predicted],
            labeled=self.labeled[predicted],
            correct=is_team[predicted],
            label_count=int(is_team.sum()),
            window=len(self),
        )

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


# --- What-if, curve and suggestion of one class (a team, a tag) ---------------------------------


@dataclass(frozen=True)
class ClassOutcomes:
    """One class's candidates with what labels say of each: the one input of the what-if, the curve and the
    suggestion, for a team (``Outcomes.for_class``) as for a tag (``learning.tag_tuning``).

    A *candidate* is a ticket the class is the prediction for (a team's: its top team is the team; a
    multi-label tag's: every scored ticket); ``confidence`` is the probability it gave the class and
    ``correct`` whether its label says it is that class (meaningful where ``labeled``). ``label_count``
    counts every ticket labeled with the class, candidate or not (recall's denominator), ``window``
    every ticket measured.

    >>> c = ClassOutcomes.from_pairs("a", [(0.9, True), (0.8, False), (0.5, None)], label_count=2, window=4)
    >>> class_what_if(c, 0.7).precision, c.noun
    (0.5, 'team')
    """

    name: str
    confidence: np.ndarray  # float, one per candidate
    labeled: np.ndarray  # bool
    correct: np.ndarray  # bool; False where unlabeled
    label_count: int
    window: int
    noun: str = "team"  # how messages call the class: "team" or "tag"

    @classmethod
    def from_pairs(
        cls,
        name: str,
        pairs: Iterable[tuple[float, bool | None]],
        *,
        label_count: int | None = None,
        window: int | None = None,
        noun: str = "team",
    ) -> ClassOutcomes:
        """From ``(probability, is_correct)`` per candidate (``None``: no label); by default the candidates are the
        window and their positive labels the label count."""
        pairs = list(pairs)
        correct = np.array([c is True for _, c in pairs], dtype=bool)
        return cls(
            name=name,
            confidence=np.array([float(p) for p, _ in pairs], dtype=float),
            labeled=np.array([c is not None for _, c in pairs], dtype=bool),
            correct=correct,
            label_count=int(correct.sum()) if label_count is None else label_count,
            window=len(pairs) if window is None else window,
            noun=noun,
        )

    def __len__(self) -> int:
        return len(self.confidence)


@dataclass(frozen=True)
class WhatIf:
    """What threshold ``threshold`` for ``team`` (a team or a tag) does on the window (module docstring).

    For a tag, *routed* reads *set*: shown as set on the ticket (there is no mode, it is ``auto``)."""

    team: str
    threshold: float
    mode: str
    window: int  # tickets in the window
    predicted: int  # candidates: top team == team (for a tag, see ClassOutcomes)
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

    def point(self) -> CurvePoint:
        return CurvePoint(self.threshold, self.precision, self.recall, self.coverage, self.routed, self.routed_labeled)


def what_if(outcomes: Outcomes, team: str, threshold: float, mode: str = "auto") -> WhatIf:
    """Count what ``threshold`` would have done for ``team`` on ``outcomes``.

    >>> o = Outcomes.from_rows([(1, "a", 0.9, "a"), (2, "a", 0.8, "b"), (3, "a", 0.5, None), (4, "b", 0.9, "a")])
    >>> w = what_if(o, "a", 0.7)
    >>> (w.routed, w.correct, w.wrong, w.precision, w.coverage, w.recall)
    (2, 1, 1, 0.5, 0.6666666666666666, 0.5)
    """
    return class_what_if(outcomes.for_class(team), threshold, mode)


def class_what_if(c: ClassOutcomes, threshold: float, mode: str = "auto") -> WhatIf:
    """What ``threshold`` does for one class (``what_if`` for a team; a tag's what-if calls it directly)."""
    threshold = check_threshold(threshold)
    routed = c.confidence >= threshold
    routed_labeled = int((routed & c.labeled).sum())
    correct = int((routed & c.correct).sum())
    precision = _ratio(correct, routed_labeled)
    recall = _ratio(correct, c.label_count)
    n_routed = int(routed.sum())
    auto = mode == "auto"
    wrong = routed_labeled - correct
    return WhatIf(
        team=c.name,
        threshold=threshold,
        mode=mode,
        window=c.window,
        predicted=len(c),
        routed=n_routed,
        auto_routed=n_routed if auto else 0,
        routed_labeled=routed_labeled,
        correct=correct,
        wrong=wrong,
        unlabeled=n_routed - routed_labeled,
        label_count=c.label_count,
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        coverage=_ratio(n_routed, len(c)),
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
    """The router's precision-recall curve for ``team`` (``class_curve`` of its candidates)."""
    return class_curve(outcomes.for_class(team))


def class_curve(c: ClassOutcomes) -> list[CurvePoint]:
    """The precision-recall curve of one class: one point per distinct confidence of a labeled
    candidate (the only thresholds at which precision or recall change), lowest threshold first.
    Each point equals ``class_what_if(c, point.threshold)``."""
    order = np.argsort(c.confidence, kind="stable")
    conf = c.confidence[order]
    labeled = c.labeled[order]
    hits = (c.correct & c.labeled)[order]
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
    return [
        CurvePoint(
            threshold=float(theta),
            precision=_ratio(int(k), int(n_lab)),
            recall=_ratio(int(k), c.label_count),
            coverage=_ratio(int(n), len(conf)),
            routed=int(n),
            routed_labeled=int(n_lab),
        )
        for theta, n, n_lab, k in zip(candidates, routed, routed_labeled, correct, strict=True)
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
    outcomes: Outcomes, team: str, target: float, min_support: int = MIN_THRESHOLD_SUPPORT
) -> Suggestion:
    """The smallest threshold whose precision for ``team`` is at least ``target`` (``suggest_class_threshold``
    on the team's candidates).

    >>> o = Outcomes.from_rows([(1, "a", 0.9, "a"), (2, "a", 0.8, "b"), (3, "a", 0.7, "a")])
    >>> suggest_threshold(o, "a", 0.95, min_support=1).threshold
    0.9
    """
    return suggest_class_threshold(outcomes.for_class(team), target, min_support)


def suggest_class_threshold(c: ClassOutcomes, target: float, min_support: int = MIN_THRESHOLD_SUPPORT) -> Suggestion:
    """The smallest threshold whose precision for one class is at least ``target``, measured on at least
    ``min_support`` labeled candidates.

    The choice is ``mlops.calibration.best_threshold``'s (the one threshold chooser) on the labeled
    candidates; unlabeled ones only count for coverage. Precision is not monotonic in the threshold,
    so every distinct confidence is a candidate and the lowest that qualifies wins.
    """
    target = float(target)
    if math.isnan(target) or not 0.0 < target <= 1.0:
        raise ValueError(f"target precision must be within (0, 1], got {target}")
    if min_support < 1:
        raise ValueError(f"minimum support must be at least 1, got {min_support}")
    base = dict(team=c.name, target=target, min_support=min_support)
    who = f"{c.noun.capitalize()} {c.name!r}"
    points = class_curve(c)
    if not points:
        return Suggestion(
            **base,
            threshold=None,
            precision=None,
            recall=None,
            coverage=None,
            support=0,
            message=f"{who} has no labeled predictions in this window: there is nothing to measure "
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
            message=f"{who} has only {most} labeled predictions in this window; at least "
            f"{min_support} are needed to trust a precision.",
        )
    chosen = calibration.best_threshold(
        c.confidence[c.labeled], c.correct[c.labeled], 0, target, "precision", min_support
    )
    if chosen is not None:
        p = next(p for p in supported if p.threshold == chosen[0])
        return Suggestion(
            **base,
            threshold=p.threshold,
            precision=p.precision,
            recall=p.recall,
            coverage=p.coverage,
            support=p.routed_labeled,
            best_precision=p.precision,
            best_threshold=p.threshold,
            message=f"θ = {p.threshold:.3f} reaches precision {p.precision:.3f} on {p.routed_labeled} labeled tickets.",
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
        message=f"No threshold reaches precision {target:.3f} for {c.noun} {c.name!r} with at least {min_support} "
        f"labeled tickets (best is {best.precision:.3f} at θ = {best.threshold:.3f}, "
        f"on {best.routed_labeled} labeled tickets).",
    )
