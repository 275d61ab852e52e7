"""Training labels: the latest label of each ticket, resolved to a current active team.

Labels whose team was renamed follow it; labels whose team was deleted are re-attached by slug when a
team with that slug exists again, otherwise excluded; labels of a deactivated team are excluded. Every
exclusion is counted by reason and shown with the version.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from triage.models import Correction, Team, TeamChange


@dataclass(frozen=True)
class Example:
    ticket_id: int
    text: str
    label: str  # slug of the current team
    correction_id: int


@dataclass
class LabelSet:
    """Training data: one example per labelled ticket, and what was left out and why."""

    examples: list[Example]
    excluded: Counter = field(default_factory=Counter)  # reason -> tickets
    remapped: Counter = field(default_factory=Counter)  # "old slug -> new slug" -> tickets

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(e.label for e in self.examples).items()))

    def report(self) -> dict[str, Any]:
        return {
            "labelled_tickets": len(self.examples) + sum(self.excluded.values()),
            "used": len(self.examples),
            "excluded": dict(sorted(self.excluded.items())),
            "remapped": dict(sorted(self.remapped.items())),
        }


EXCLUDED_INACTIVE = "team deactivated"
EXCLUDED_DELETED = "team deleted"


def slug_history() -> dict[str, str]:
    """Old slug → the slug it was renamed to, from the team audit trail (``TeamChange`` field ``slug``)."""
    rows = TeamChange.objects.filter(field="slug").order_by("created_at", "pk").values_list("before", "after")
    return {before: after for before, after in rows if before and after and before != after}


def _follow(slug: str, renames: dict[str, str]) -> str:
    seen = {slug}
    while slug in renames and renames[slug] not in seen:
        slug = renames[slug]
        seen.add(slug)
    return slug


def collect_labels(*, until=None, texts: bool = True) -> LabelSet:
    """The latest label of each ticket, resolved to a current active team (see the module docstring).

    ``until``: only labels recorded up to this moment (the training's start), so that a run is
    reproducible from its data hash even while agents keep labelling. ``texts=False`` leaves the
    tickets' text out (empty), for counting.
    """
    labels = Correction.objects.all()
    if until is not None:
        labels = labels.filter(created_at__lte=until)
    fields = ["pk", "ticket_id", "to_team_slug", "to_team"] + (["ticket__subject", "ticket__body"] if texts else [])
    latest = labels.latest_per_ticket().select_related("to_team", *(["ticket"] if texts else [])).only(*fields)
    teams_by_slug = {t.slug: t for t in Team.objects.all()}
    renames: dict[str, str] | None = None
    out = LabelSet(examples=[])
    for label in latest:
        team = label.to_team
        if team is None:  # deleted: a team with the slug (or the slug it was renamed to) may exist now
            if renames is None:
                renames = slug_history()
            team = teams_by_slug.get(_follow(label.to_team_slug, renames))
            if team is None:
                out.excluded[EXCLUDED_DELETED] += 1
                continue
        if not team.active:
            out.excluded[EXCLUDED_INACTIVE] += 1
            continue
        if team.slug != label.to_team_slug:
            out.remapped[f"{label.to_team_slug} -> {team.slug}"] += 1
        out.examples.append(Example(label.ticket_id, label.ticket.text if texts else "", team.slug, label.pk))
    out.examples.sort(key=lambda e: e.ticket_id)
    return out


def data_hash(examples: Sequence[Example], extra: dict[str, Any] | None = None) -> str:
    """SHA-256 of the (ticket, label, text) triples and the split settings: same data, same hash."""
    h = hashlib.sha256()
    for e in sorted(examples, key=lambda e: e.ticket_id):
        h.update(f"{e.ticket_id}\t{e.label}\t".encode())
        h.update(hashlib.sha256(e.text.encode("utf-8")).digest())
        h.update(b"\n")
    h.update(json.dumps(extra or {}, sort_keys=True, default=str).encode())
    return h.hexdigest()
