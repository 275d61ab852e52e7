"""Stratified split: every trained team keeps at least two training labels and has held-out ones."""

from __future__ import annotations

from collections import Counter

from mlops.training import Example, split_examples


def examples(counts: dict[str, int]) -> list[Example]:
    out, n = [], 0
    for team, count in counts.items():
        for _ in range(count):
            n += 1
            out.append(Example(n, f"ticket {n}", team, n))
    return out


def test_each_team_holds_out_its_share_of_labels():
    split = split_examples(examples({"a": 12, "b": 8, "c": 20}), min_per_team=8, fraction=0.25, seed=1)
    assert Counter(e.label for e in split.holdout) == {"a": 3, "b": 2, "c": 5}
    assert Counter(e.label for e in split.train) == {"a": 9, "b": 6, "c": 15}
    assert split.trained_teams == ["a", "b", "c"] and split.zero_shot_teams == []


def test_teams_below_the_minimum_are_not_trained_and_all_their_labels_are_held_out():
    split = split_examples(examples({"a": 10, "b": 10, "c": 3}), min_per_team=8, fraction=0.25, seed=1)
    assert split.zero_shot_teams == ["c"]
    assert "c" not in {e.label for e in split.train}
    assert Counter(e.label for e in split.holdout)["c"] == 3


def test_the_split_is_the_same_for_the_same_seed_and_differs_for_another():
    data = examples({"a": 16, "b": 16})
    first = split_examples(data, min_per_team=8, fraction=0.25, seed=7)
    again = split_examples(list(reversed(data)), min_per_team=8, fraction=0.25, seed=7)
    other = split_examples(data, min_per_team=8, fraction=0.25, seed=8)
    assert [e.ticket_id for e in first.holdout] == [e.ticket_id for e in again.holdout]
    assert {e.ticket_id for e in first.holdout} != {e.ticket_id for e in other.holdout}


def test_no_ticket_is_both_trained_on_and_held_out():
    split = split_examples(examples({"a": 9, "b": 30}), min_per_team=8, fraction=0.5, seed=3)
    assert not {e.ticket_id for e in split.train} & {e.ticket_id for e in split.holdout}
    assert len(split.train) + len(split.holdout) == 39
