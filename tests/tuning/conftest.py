from __future__ import annotations

import random

import pytest

from tags.models import TagLabel
from tests.tags.builders import make_tag_sets, predict_tags, tag
from tests.tuning.builders import build_history, make_teams
from triage.models import Ticket


@pytest.fixture
def teams(db):
    return make_teams()


@pytest.fixture
def history(db):
    return build_history()


@pytest.fixture
def topics_history(db):
    """Forty tickets scored for topics/security; most labelled (add or remove, some relabelled)."""
    make_tag_sets()
    security = tag("topics/security")
    rng = random.Random(3)
    rows = []
    for i in range(40):
        ticket = Ticket.objects.create(subject=f"ticket {i}", body="text")
        fits = rng.random() < 0.5
        p = round(min(1.0, max(0.0, (0.65 if fits else 0.35) + rng.uniform(-0.35, 0.35))), 2)
        predict_tags(ticket, {"topics/security": p, "topics/outage": 0.1})
        truth = None
        if i % 5:
            if i % 7 == 0:  # relabelled: the latest label counts
                TagLabel.objects.create(ticket=ticket, tag=security, action="add" if not fits else "remove")
            TagLabel.objects.create(ticket=ticket, tag=security, action="add" if fits else "remove")
            truth = fits
        rows.append((p, truth))
    return security, rows
