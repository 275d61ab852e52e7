"""The order in which labels are asked for (``mlops.active``): uncertain first, but not ten copies of one doubt."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.active import cluster_margin, margins, queue_order, spread_by_class


def _torn(a: float, n_columns: int, i: int, j: int) -> list[float]:
    row = [0.0] * n_columns
    row[i], row[j] = a, 1 - a
    return row


def test_near_copies_of_one_doubt_do_not_fill_a_batch():
    # Five tickets torn between teams 0 and 1 in the same way, with the smallest margins; one torn
    # between 0 and 2 with a larger margin. Plain margin order asks for all five copies first.
    rows = [_torn(0.50 + 0.005 * i, 3, 0, 1) for i in range(5)] + [_torn(0.56, 3, 0, 2)]
    p = np.array(rows)
    assert spread_by_class([0] * 6, margins(p).tolist())[:3] == [0, 1, 2]
    assert 5 in cluster_margin(p, batch=3)[:3]


def test_an_exact_duplicate_takes_one_place_in_a_batch():
    p = np.array([[0.5, 0.5, 0.0]] * 4 + [[0.0, 0.6, 0.4]])
    assert cluster_margin(p, batch=2)[:2] == [0, 4]


def test_every_row_comes_once_and_the_order_is_reproducible():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6) * 0.3, size=150)
    groups = p.argmax(axis=1).tolist()
    order = cluster_margin(p, batch=6, groups=groups, seed=4)
    assert sorted(order) == list(range(150))
    assert order == cluster_margin(p, batch=6, groups=groups, seed=4)
    assert cluster_margin(p, batch=6, limit=10) == cluster_margin(p, batch=6)[:10]
    full = queue_order(p, groups, head=40)
    assert sorted(full) == list(range(150)) and full[:40] == cluster_margin(p, batch=6, groups=groups, limit=40)


def test_the_head_of_a_queue_of_two_thousand_tickets_is_ordered_in_well_under_a_second():
    import time

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(12) * 0.3, size=2000)
    started = time.perf_counter()
    queue_order(p, p.argmax(axis=1).tolist())
    assert time.perf_counter() - started < 2.0  # ~0.2 s on a busy 2-core machine; a page must not wait on it


def test_it_refuses_a_batch_of_zero_and_groups_of_the_wrong_length():
    p = np.array([[0.5, 0.5]])
    with pytest.raises(ValueError, match="batch"):
        cluster_margin(p, batch=0)
    with pytest.raises(ValueError, match="groups"):
        cluster_margin(p, batch=1, groups=["a", "b"])
    assert queue_order(np.zeros((0, 3)), []) == []
