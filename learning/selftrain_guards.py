"""Promotion guards of a self-trained version: there are no held-out labels, so it is compared with the
zero-shot version on the same unlabeled tickets, and with the champion on agents' labels once any exist.

Each guard returns a ``Guard``: its name, whether it passed, a sentence for the admin page and the
numbers behind it (stored on the version's ``metrics["guards"]``). Plain numpy over logits and labels.

* ``agreement`` — on the zero-shot version's most confident tickets (the top ``confident_share`` of a
  sample by its calibrated confidence, the share its routing would trust most), the self-trained head
  must pick the same team at least ``min_agreement`` of the time: where the teacher was surely right,
  the student must not have drifted away;
* ``volume`` — no team may lose more than ``max_volume_loss`` of the tickets the zero-shot version
  sends it (teams with fewer than ``MIN_VOLUME`` such tickets in the sample are too noisy to judge);
* ``labels`` — on agents' labels, the self-trained macro-F1 may be at most ``tolerance`` below the
  champion's. With no labels it passes and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlops.calibration import apply_calibration

# A team the zero-shot version sends fewer tickets than this (in the guard's sample) is not judged on volume.
MIN_VOLUME = 5


@dataclass(frozen=True)
class Guard:
    name: str
    passed: bool
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement_guard(
    zero_logits: np.ndarray,
    self_logits: np.ndarray,
    *,
    zero_calibration: dict | None,
    confident_share: float,
    min_agreement: float,
) -> Guard:
    """Agreement with the zero-shot version on its most confident ``confident_share`` of the rows.

    >>> z = np.array([[5., 0.], [0., 5.], [1., .9], [.9, 1.]]); s = np.array([[1., 0.], [0., 1.], [0., 1.], [1., 0.]])
    >>> agreement_guard(z, s, zero_calibration={}, confident_share=0.5, min_agreement=0.9).passed
    True
    """
    confidence = apply_calibration(np.asarray(zero_logits), zero_calibration).max(axis=1)
    n = len(confidence)
    top = np.argsort(-confidence, kind="stable")[: max(1, math.ceil(confident_share * n))]
    same = np.asarray(zero_logits)[top].argmax(axis=1) == np.asarray(self_logits)[top].argmax(axis=1)
    agreement = float(same.mean())
    numbers = {
        "agreement": round(agreement, 4),
        "tickets": int(len(top)),
        "sample": n,
        "min_confidence": round(float(confidence[top].min()), 4),
        "min_agreement": min_agreement,
    }
    passed = agreement >= min_agreement - 1e-9
    verb = "agrees" if passed else "agrees only"
    return Guard(
        "agreement",
        passed,
        f"{verb} with the zero-shot version on {agreement:.1%} of its {len(top)} most confident tickets "
        f"(confidence ≥ {numbers['min_confidence']:.2f}, of {n}); at least {min_agreement:.0%} needed",
        numbers,
    )


def volume_guard(zero_logits: np.ndarray, self_logits: np.ndarray, slugs: Sequence[str], *, max_loss: float) -> Guard:
    """No team loses more than ``max_loss`` of the tickets the zero-shot version predicts for it.

    >>> z = np.eye(2)[[0] * 10 + [1] * 10]; s = np.eye(2)[[0] * 17 + [1] * 3]
    >>> volume_guard(z, s, ["billing", "orders"], max_loss=0.5).message
    'orders would lose 70% of its predicted tickets (10 → 3 of 20); at most 50% allowed'
    """
    k = len(slugs)
    old = np.bincount(np.asarray(zero_logits).argmax(axis=1), minlength=k)
    new = np.bincount(np.asarray(self_logits).argmax(axis=1), minlength=k)
    per_team = {slug: {"zero_shot": int(o), "self_trained": int(n)} for slug, o, n in zip(slugs, old, new, strict=True)}
    judged = [
        (float((o - n) / o), slug, int(o), int(n))
        for slug, o, n in zip(slugs, old, new, strict=True)
        if o >= MIN_VOLUME
    ]
    numbers: dict[str, Any] = {"per_team": per_team, "max_loss": max_loss, "min_volume": MIN_VOLUME}
    total = int(old.sum())
    if not judged:
        return Guard("volume", True, f"no team has {MIN_VOLUME} predicted tickets in the sample to judge", numbers)
    loss, slug, o, n = max(judged)
    numbers.update(worst_team=slug, worst_loss=round(loss, 4))
    if loss > max_loss + 1e-9:
        return Guard(
            "volume",
            False,
            f"{slug} would lose {loss:.0%} of its predicted tickets ({o} → {n} of {total}); "
            f"at most {max_loss:.0%} allowed",
            numbers,
        )
    change = f"{slug} loses the most, {max(loss, 0.0):.0%} ({o} → {n})" if loss > 0 else "no team loses tickets"
    return Guard("volume", True, f"{change}; at most {max_loss:.0%} allowed", numbers)


def labels_guard(
    self_scores: dict[str, Any] | None, champion_scores: dict[str, Any] | None, champion: str, *, tolerance: float
) -> Guard:
    """Not worse than the champion on agents' labels (macro-F1, ``mlops.calibration``'s definition)."""
    if not self_scores or not champion_scores:
        return Guard("labels", True, "no agents' labels yet: nothing to compare on", {"labels": 0})
    new, old = float(self_scores["macro_f1"]), float(champion_scores["macro_f1"])
    numbers = {
        "labels": int(self_scores["n"]),
        "macro_f1": new,
        "accuracy": self_scores["accuracy"],
        "champion": champion,
        "champion_macro_f1": old,
        "champion_accuracy": champion_scores["accuracy"],
        "tolerance": tolerance,
    }
    passed = new >= old - tolerance - 1e-9
    relation = "not worse than" if passed else "worse than"
    return Guard(
        "labels",
        passed,
        f"macro-F1 {new:.3f} on {numbers['labels']} agents' labels is {relation} the champion {champion}'s "
        f"{old:.3f} (tolerance {tolerance:.3f})",
        numbers,
    )


def decide_promotion(guards: Sequence[Guard]) -> tuple[bool, Guard | None, str]:
    """Promote when every guard passed; otherwise the first that failed decides. ``(promote, guard, reason)``."""
    for guard in guards:
        if not guard.passed:
            return False, guard, f"{guard.name} guard: {guard.message}"
    return True, None, "every guard passed: " + "; ".join(f"{g.name}: {g.message}" for g in guards)
