"""Which unlabeled ticket a label would teach most: margins, spread over predicted teams, and diversity.

Shared by the agents' "Label next" queue (recorded predictions) and ``learning_curve --strategy
uncertainty`` (a pool of training texts), so that the queue and the measurement that justifies it
choose the same way. No Django, no model library: plain numbers in, indices out.

The order (``cluster_margin``, "uncertainty + diversity" after Citovsky et al., 2021, Cluster-Margin):
labels are asked in batches. A batch of n looks at the 5·n tickets with the smallest margin between
the top two teams (the model is torn, so a label moves a boundary that matters), groups them into n
clusters of tickets the model is torn about *in the same way* (k-means on the square roots of the
predicted probabilities), and takes the most central ticket of each cluster; a batch lists one ticket
per predicted team in turn. The plain margin order asks for ten near-copies of one confusion, and its
picks sit at the edge of what they teach; the central ticket of a cluster stands for all of it.

Chosen on Banking77 train/dev (``bench/active_sweep.py``: half of train as the pool, the other half
scored, balanced accuracy, the "examples" learner, 6 seeds) against the plain margin order, margin
with outliers or near-duplicates left out, information density, TypiClust (most typical text of
k-means clusters of the pool) and TypiClust or zero-shot-class typicality as the first round: at 2 / 4
/ 8 labels per class random (k per class) 76.3 / 78.5 / 81.2 %, plain margin 77.9 / 80.8 / 84.2 %,
this 78.6 / 82.5 / 84.7 %; 4 or 16 rounds instead of 8 and 3 or 10 candidates per label did no
better. Clustering on the text embeddings instead of the probabilities measured the same within
noise (Banking77 +0.4, Parcelwise −0.8 points), and the probabilities are what the queue has at hand.
On Banking77 test: ``learning_curve``'s docstring. It serves a learner that keeps the zero-shot prior
(descriptions plus examples); a bare logistic head trained on these labels alone does worse than on
random ones (uncertain texts are a biased sample of each class).
"""

from __future__ import annotations

import warnings
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


# Chosen on Banking77 dev (bench/active_sweep.py): 3 and 10 candidates per label measured the same.
CANDIDATES_PER_LABEL = 5


def cluster_margin(
    probabilities: np.ndarray,
    *,
    batch: int,
    groups: Sequence[Hashable] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[int]:
    """Row indices in the order to ask for labels: batches of ``batch``, each diverse and uncertain.

    Per batch: the ``CANDIDATES_PER_LABEL × batch`` rows left with the smallest margin, k-means on the
    square roots of their probabilities (rows torn the same way cluster together; identical rows are
    one point, so duplicates cannot take two places), and the row nearest each cluster's centre. A
    batch is listed one row per ``groups`` value (the predicted team) in turn, lowest margin first.
    Stops after ``limit`` rows (a prefix of the whole order). Deterministic for a given ``seed``.

    >>> p = np.array([[0.50, 0.50, 0.0], [0.50, 0.50, 0.0], [0.51, 0.49, 0.0], [0.0, 0.55, 0.45], [0.9, 0.1, 0.0]])
    >>> cluster_margin(p, batch=2)  # one a/b row, then the b/c one, not three a/b copies; the exact copy last
    [2, 3, 0, 4, 1]
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if groups is not None and len(groups) != len(probabilities):
        raise ValueError(f"{len(probabilities)} rows but {len(groups)} groups")
    features = np.sqrt(np.clip(probabilities, 0.0, None))
    margin = margins(probabilities)
    remaining = np.argsort(margin, kind="stable").tolist()
    cap = len(remaining) if limit is None else min(max(0, limit), len(remaining))
    out: list[int] = []
    while len(out) < cap:
        # Whole batches, cut at the end: the first rows do not depend on ``limit``.
        n = min(batch, len(remaining))
        candidates = np.array(remaining[: CANDIDATES_PER_LABEL * n])
        picks = _central_per_cluster(features[candidates], n, seed)
        chosen = candidates[picks]
        if groups is None:
            ordered = sorted(chosen.tolist(), key=lambda i: margin[i])
        else:
            within = spread_by_class([groups[i] for i in chosen], margin[chosen].tolist())
            ordered = [int(chosen[j]) for j in within]
        out.extend(ordered)
        taken = set(ordered)
        remaining = [i for i in remaining if i not in taken]
    return out[:cap]


# The queue orders its head this way (a page request runs one k-means per batch, ~0.01 s each); past it,
# where no agent reads before the next retraining re-scores the stream, plain margin order is enough.
QUEUE_DIVERSE_HEAD = 200


def queue_order(probabilities: np.ndarray, groups: Sequence[Hashable], *, head: int = QUEUE_DIVERSE_HEAD) -> list[int]:
    """The "Label next" order of rows: ``cluster_margin`` for the first ``head`` rows, in batches of
    one label per column (team) on average, then the rest lowest margin first, one per group in turn.

    >>> queue_order(np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]]), ["a", "a", "a"], head=2)
    [0, 2, 1]
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(probabilities) == 0:
        return []
    first = cluster_margin(probabilities, batch=max(1, probabilities.shape[1]), groups=groups, limit=head)
    taken = set(first)
    rest = [i for i in range(len(probabilities)) if i not in taken]
    tail = spread_by_class([groups[i] for i in rest], margins(probabilities[rest]).tolist())
    return first + [rest[j] for j in tail]


def _central_per_cluster(features: np.ndarray, n: int, seed: int) -> list[int]:
    """Row of ``features`` nearest each of ``n`` k-means centres (fewer when rows repeat), in input order."""
    distinct, first = np.unique(features.round(6), axis=0, return_index=True)
    if len(distinct) <= n:
        return sorted(first.tolist())
    from scipy.cluster.vq import kmeans2

    # scipy's k-means, not scikit-learn's: a queue page runs it once per batch, and scikit-learn's
    # set-up costs ~0.1 s a call against ~0.01 s here for the same clustering of ~100 rows.
    keep = np.sort(first)
    rows = features[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty cluster only means one pick fewer in this batch
        _, assignment = kmeans2(rows, n, minit="++", seed=seed)
    picks = []
    for cluster in np.unique(assignment):
        members = np.flatnonzero(assignment == cluster)
        centre = rows[members].mean(axis=0)
        picks.append(int(members[np.argmin(((rows[members] - centre) ** 2).sum(axis=1))]))
    return sorted(keep[picks].tolist())
