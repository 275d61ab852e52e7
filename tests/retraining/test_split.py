"""Stratified, stable split: trained teams keep two training labels and hold some out, the same ones
in every training."""

from __future__ import annotations

from collections import Counter

from learning.labels import Example
from learning.split import holdout_rank, split_examples


def examples(counts: dict[str, int], start: int = 0) -> list[Example]:
    out, n = [], start
    for team, count in counts.items():
        for _ in range(count):
            n += 1
            out.append(Example(n, f"ticket {n}", team, n))
    return out


def test_each_trained_team_holds_out_at_least_one_label_and_trains_on_at_least_two():
    split = split_examples(examples({"a": 12, "b": 8, "c": 40, "d": 3}), min_per_team=3, fraction=0.25)
    held, trained = Counter(e.label for e in split.holdout), Counter(e.label for e in split.train)
    assert all(held[t] >= 1 and trained[t] >= 2 for t in "abcd")
    assert sum(held.values()) + sum(trained.values()) == 63
    assert 5 <= held["c"] <= 16  # about a quarter of 40
    assert split.trained_teams == ["a", "b", "c", "d"] and split.zero_shot_teams == []


def test_a_ticket_is_held_out_when_its_fixed_rank_is_below_the_fraction():
    data = examples({"a": 200})
    split = split_examples(data, min_per_team=8, fraction=0.25)
    assert {e.ticket_id for e in split.holdout} == {e.ticket_id for e in data if holdout_rank(e.ticket_id) < 0.25}


def test_teams_below_the_minimum_are_not_trained_and_all_their_labels_are_held_out():
    split = split_examples(examples({"a": 10, "b": 10, "c": 3}), min_per_team=8, fraction=0.25)
    assert split.zero_shot_teams == ["c"]
    assert "c" not in {e.label for e in split.train}
    assert Counter(e.label for e in split.holdout)["c"] == 3


def test_tickets_held_out_stay_held_out_when_more_labels_arrive():
    first = split_examples(examples({"a": 40, "b": 40}), min_per_team=8, fraction=0.25)
    grown = split_examples(examples({"a": 40, "b": 40}) + examples({"a": 30, "b": 30}, start=1000), min_per_team=8,
                           fraction=0.25)  # fmt: skip
    assert {e.ticket_id for e in first.holdout} <= {e.ticket_id for e in grown.holdout}
    assert not {e.ticket_id for e in first.holdout} & {e.ticket_id for e in grown.train}


def test_the_split_does_not_depend_on_the_order_of_the_examples():
    data = examples({"a": 16, "b": 16})
    assert split_examples(data, min_per_team=8, fraction=0.25) == split_examples(
        list(reversed(data)), min_per_team=8, fraction=0.25
    )
