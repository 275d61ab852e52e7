"""The held-out split of a training run: stratified, and stable as labels grow."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .labels import Example


@dataclass
class Split:
    train: list[Example]
    holdout: list[Example]
    trained_teams: list[str]  # teams the model learns
    zero_shot_teams: list[str]  # active teams left to zero-shot (too few labels)


# Fixed, so that a ticket held out once stays held out in later trainings: a later champion/challenger
# comparison then runs on tickets neither model was trained on.
HOLDOUT_SALT = "triage-holdout-v1"


def holdout_rank(ticket_id: int) -> float:
    """A ticket's fixed place in [0, 1): held out when below the held-out fraction."""
    digest = hashlib.sha256(f"{HOLDOUT_SALT}:{ticket_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_examples(examples: Sequence[Example], *, min_per_team: int, fraction: float) -> Split:
    """Stratified, stable split: per team, the tickets whose ``holdout_rank`` is below ``fraction``.

    Per team at least one ticket is held out and at least two are kept for training (the lowest
    ranks fill or trim the held-out share). The assignment of a ticket does not depend on the other
    tickets, so growing label sets keep their earlier held-out tickets held out. Teams with fewer than
    ``min_per_team`` labels are not trained on: all their labels are held out, so the evaluation
    still covers them (scored by the zero-shot part of the hybrid).
    """
    by_team: dict[str, list[Example]] = {}
    for e in examples:
        by_team.setdefault(e.label, []).append(e)
    train: list[Example] = []
    holdout: list[Example] = []
    trained, zero_shot = [], []
    for team in sorted(by_team):
        items = sorted(by_team[team], key=lambda e: (holdout_rank(e.ticket_id), e.ticket_id))
        if len(items) < max(min_per_team, 3):
            holdout.extend(items)
            zero_shot.append(team)
            continue
        below = sum(1 for e in items if holdout_rank(e.ticket_id) < fraction)
        n_hold = min(len(items) - 2, max(1, below))
        holdout.extend(items[:n_hold])
        train.extend(items[n_hold:])
        trained.append(team)
    return Split(train, holdout, trained, zero_shot)
