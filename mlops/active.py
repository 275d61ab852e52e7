"""Which unlabeled ticket a label would teach most: margins and a round-robin over predicted teams.

Shared by the agents' "Label next" queue (recorded predictions) and ``learning_curve --strategy
uncertainty`` (a pool of training texts), so that the queue and the measurement that justifies it
choose the same way. No Django, no model library: plain numbers in, indices out.

The order: the smallest margin between the top two classes first (the model is torn between them,
so a label moves the boundary that matters), but one item per predicted class in turn, so that a
class the model predicts often, or one whose tickets are all hard, cannot fill the queue alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def margins(probabilities: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row; a single class has margin 1 (nothing to choose).

    >>> margins(np.array([[0.5, 0.3, 0.2], [0.9, 0.1, 0.0]])).round(2).tolist()
    [0.2, 0.8]
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be a matrix, got shape {probabilities.shape}")
    if probabilities.shape[1] < 2:
        return np.ones(probabilities.shape[0])
    top2 = -np.partition(-probabilities, 1, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def spread_by_class(
    groups: Sequence[Hashable], priorities: Sequence[float], *, limit: int | None = None, first: Iterable = ()
) -> list[int]:
    """Indices in round-robin order over ``groups``, lowest ``priority`` first within each group.

    Each turn takes one item from every group that still has one; groups are visited in the order of
    their best (lowest) priority, except that groups listed in ``first`` (e.g. classes with the fewest
    labels so far) lead. Stops after ``limit`` indices. Ties keep input order (stable).

    >>> spread_by_class(["a", "a", "a", "b"], [0.1, 0.2, 0.3, 0.9], limit=3)
    [0, 3, 1]
    """
    if len(groups) != len(priorities):
        raise ValueError(f"{len(groups)} groups but {len(priorities)} priorities")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i in sorted(range(len(groups)), key=lambda i: priorities[i]):
        members[groups[i]].append(i)
    leading = [g for g in dict.fromkeys(first) if g in members]
    order = leading + [g for g in members if g not in set(leading)]
    out: list[int] = []
    cap = len(groups) if limit is None else max(0, limit)
    depth = 0
    while len(out) < cap:
        took = False
        for group in order:
            if depth < len(members[group]):
                out.append(members[group][depth])
                took = True
                if len(out) == cap:
                    break
        if not took:
            break
        depth += 1
    return out
