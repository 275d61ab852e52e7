"""``calibrate_routing``: temperature and per-team thresholds for the champion, from agents' labels."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from mlops.models import ModelVersion
from triage.models import Correction, Prediction, Team, TeamChange, Ticket
from triage.services import record_label

pytestmark = pytest.mark.django_db


def champion(scorer: str = "embedding") -> ModelVersion:
    return ModelVersion.objects.create(
        scorer=scorer, model_ref="packaged", version=f"{scorer}-test", status=ModelVersion.Status.CHAMPION
    )


def labeled_predictions(teams, version: ModelVersion, n: int = 60, seed: int = 0) -> None:
    """Predictions that are overconfident (stored raw scores 3x too sharp), each with an agent's label."""
    rng = np.random.default_rng(seed)
    slugs = sorted(teams)
    for i in range(n):
        true = rng.normal(0, 1.5, size=len(slugs))
        p_true = np.exp(true) / np.exp(true).sum()
        label = slugs[rng.choice(len(slugs), p=p_true)]
        sharp = np.exp(3 * true) / np.exp(3 * true).sum()
        top = slugs[int(sharp.argmax())]
        ticket = Ticket.objects.create(subject=f"t{i}", body=f"ticket {i}", status=Ticket.Status.NEEDS_TRIAGE)
        prediction = Prediction.objects.create(
            ticket=ticket,
            model_version=version,
            scorer=version.scorer,
            scores=dict(zip(slugs, sharp.tolist(), strict=True)),
            raw_scores=dict(zip(slugs, sharp.tolist(), strict=True)),
            chosen_team=teams[top],
            confidence=float(sharp.max()),
            threshold=0.5,
            decision=Prediction.Decision.SUGGESTED,
        )
        kind = Correction.Kind.ACCEPTED if label == top else Correction.Kind.CORRECTED
        record_label(ticket, teams[label], kind=kind, prediction=prediction)


def test_it_fits_the_temperature_and_proposes_thresholds_without_touching_the_teams(teams, capsys):
    version = champion()
    labeled_predictions(teams, version)
    call_command("calibrate_routing", "--min-support", "3")
    version.refresh_from_db()
    assert version.calibration["method"] == "temperature"
    assert version.calibration["temperature"] > 1.5  # the stored scores were overconfident
    assert version.calibration["nll_after"] < version.calibration["nll_before"]
    assert set(version.thresholds) == set(teams)
    assert all(0 <= t <= 1 for t in version.thresholds.values())
    assert version.metrics["calibration"]["n"] == 60
    assert set(Team.objects.values_list("threshold", flat=True)) == {0.5}
    assert "run with --apply" in capsys.readouterr().out


def test_apply_writes_the_proposals_to_the_teams_with_an_audit_row(teams):
    version = champion()
    labeled_predictions(teams, version)
    call_command("calibrate_routing", "--min-support", "3", "--apply")
    version.refresh_from_db()
    for slug, team in teams.items():
        team.refresh_from_db()
        assert team.threshold == version.thresholds[slug]
    changes = TeamChange.objects.filter(field="threshold")
    assert changes.count() == sum(1 for t in version.thresholds.values() if t != 0.5)
    assert {c.reason for c in changes} == {"calibrate_routing proposal"}


def test_too_few_labels_stores_nothing(teams):
    version = champion()
    labeled_predictions(teams, version, n=5)
    with pytest.raises(CommandError, match="only 5 labeled tickets"):
        call_command("calibrate_routing")
    version.refresh_from_db()
    assert version.calibration == {} and version.thresholds == {}


def test_it_needs_a_champion_or_a_version(db):
    with pytest.raises(CommandError, match="no champion"):
        call_command("calibrate_routing")
    with pytest.raises(CommandError, match="no model version with id 999"):
        call_command("calibrate_routing", "--model-version", "999")


def test_rescore_calibrates_on_labeled_tickets_the_version_never_routed(teams, embedding_routing):
    from mlops.registry import serving_version
    from triage.routing import routable_teams, team_classes

    texts = {
        "billing": ["I was charged twice", "Refund my last invoice", "Why is there a fee on my card?"],
        "sign-in": ["I cannot log in", "Reset my password please", "My two-factor code does not work"],
        "delivery": ["Where is my parcel?", "The order is late", "Package delivered to the wrong house"],
    }
    for slug, bodies in texts.items():
        for body in bodies:
            ticket = Ticket.objects.create(subject=body, body=body, status=Ticket.Status.ROUTED)
            record_label(ticket, teams[slug], kind=Correction.Kind.IMPORTED, source="import")
    # The zero-shot version is its scorer over these teams' texts (mlops.registry.classes_fingerprint).
    version = serving_version(team_classes(routable_teams())).version
    call_command("calibrate_routing", "--rescore", "--min-labels", "9", "--min-support", "1")
    version.refresh_from_db()
    assert version.calibration["source"] == "rescore" and version.calibration["n"] == 9
    assert version.metrics["calibration"]["accuracy"] >= 0.8
