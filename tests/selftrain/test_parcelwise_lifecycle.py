"""The lifecycle on a realistic help desk: Parcelwise (12 teams with close neighbours, long e-mails).

Its 480-ticket stream is stored as tickets (the text column only: ``read_unlabeled_texts`` never reads
the label column), and so are the 120 dev tickets, which agents have labelled. A self-trained version
is built through the task body like any build; its labels guard must judge it on those labels exactly
as an independent scoring of both versions does. The test split is not read. Figures are written to
``.data/test-logs/parcelwise_lifecycle.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from learning.evaluation import scores_of
from learning.routing_files import read_descriptions, read_labeled_tsv, read_unlabeled_texts
from mlops.inference.registry import scorer_for_version
from mlops.inference.scorers import humanize_label
from mlops.registry import serving_version
from tests.selftrain.builders import store_tickets
from tests.selftrain.conftest import build
from tests.workers import BASE_DIR
from triage.models import Correction, Team
from triage.routing import routable_teams, team_classes
from triage.services import record_label

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
PARCELWISE = BASE_DIR / "eval_data" / "parcelwise"


def test_on_parcelwise_the_labels_guard_judges_the_build_on_agents_labels(selftrain_settings):
    teams = {
        slug: Team.objects.create(slug=slug, name=humanize_label(slug), description=description)
        for slug, (description, _) in read_descriptions(PARCELWISE / "teams.tsv").items()
    }
    texts, labels = read_labeled_tsv(PARCELWISE / "dev.tsv")
    for ticket, label in zip(store_tickets([("", text) for text in texts]), labels, strict=True):
        record_label(ticket, teams[label], agent=None, kind=Correction.Kind.CORRECTED)
    store_tickets([("", text) for text in read_unlabeled_texts(PARCELWISE / "stream.tsv")])  # as they come
    classes = team_classes(routable_teams())
    zero_shot = serving_version(classes).version

    started = time.monotonic()
    version = build()
    seconds = time.monotonic() - started
    assert version.metrics["stream"]["n_received"] == 600, version.metrics["reason"]

    slugs = [c.slug for c in classes]
    scores = {
        name: scores_of(np.asarray(scorer_for_version(v).logits(texts, classes)), labels, slugs)
        for name, v in (("zero_shot", zero_shot), ("self_trained", version))
    }
    guard = {g["name"]: g for g in version.metrics["guards"]}
    numbers = guard["labels"]["numbers"]
    assert numbers["labels"] == 120 and numbers["champion"] == zero_shot.version
    assert numbers["macro_f1"] == scores["self_trained"]["macro_f1"]
    assert numbers["champion_macro_f1"] == scores["zero_shot"]["macro_f1"]
    worse = scores["self_trained"]["macro_f1"] < scores["zero_shot"]["macro_f1"]
    assert guard["labels"]["passed"] is not worse
    if worse:
        assert (version.status, version.metrics["guard"]) == ("rejected", "labels")
    figures = {
        "dev_accuracy": {k: s["accuracy"] for k, s in scores.items()},
        "dev_macro_f1": {k: s["macro_f1"] for k, s in scores.items()},
        "decision": version.metrics["decision"],
        "guard": version.metrics["guard"],
        "guards": {g["name"]: g["message"] for g in version.metrics["guards"]},
        "calibration": version.metrics["calibration_source"],
        "build_seconds": round(seconds, 1),
        "loadavg": os.getloadavg(),
    }
    out = Path(BASE_DIR / ".data" / "test-logs" / "parcelwise_lifecycle.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
