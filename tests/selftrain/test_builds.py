"""Self-trained builds on the real app: the demo help desk's tickets as an unlabeled stream, the packaged
bge embedder as teacher, the packaged MiniLM bi-encoder as the zero-shot version, real Postgres.

The task body runs here (``self_train_task.apply``); ``test_end_to_end.py`` runs it on a real worker.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from learning.selftrain import check_selftrain_trigger, request_self_training
from mlops.inference.selftrain import HEAD_FILE
from mlops.models import ModelVersion, TrainingRun
from mlops.registry import serving_version
from tests.selftrain.builders import GERMAN, demo_teams, demo_tickets, store_demo_stream, store_tickets
from tests.selftrain.conftest import build
from triage.models import Correction, Team, Ticket
from triage.routing import routable_teams, route_ticket, team_classes
from triage.services import record_label

pytestmark = pytest.mark.django_db

FOUR = ["billing", "account", "orders", "setup"]


def zero_shot_champion() -> ModelVersion:
    return serving_version(team_classes(routable_teams())).version


def head_arrays(version: ModelVersion) -> dict[str, np.ndarray]:
    with np.load(f"{version.artifact_path}/{HEAD_FILE}") as arrays:
        return {k: arrays[k] for k in arrays.files}


@pytest.mark.slow  # embeds the stream with bge and fits a head: about a minute on a shared CPU
def test_a_build_that_passes_every_guard_serves_and_one_that_fails_names_the_guard(
    selftrain_settings, admin_client_ada
):
    demo_teams(FOUR)
    store_demo_stream(FOUR)
    zero_shot = zero_shot_champion()
    assert zero_shot.scorer == "embedding"

    first = build()
    assert (first.status, first.metrics["decision"], first.metrics["guard"]) == ("champion", "promoted", "all")
    assert [g["name"] for g in first.metrics["guards"]] == ["agreement", "volume", "labels"]
    agreement = first.metrics["guards"][0]["numbers"]
    assert agreement["agreement"] >= 0.8 and agreement["tickets"] == int(np.ceil(0.3 * agreement["sample"]))
    assert first.metrics["stream"]["n_received"] == len(demo_tickets(FOUR))
    assert first.calibration == {} and "head's own probabilities" in first.metrics["calibration_source"]
    assert first.training_run.state == "succeeded" and first.files_present()

    # It routes the next ticket, through the scorer registry like any version.
    ticket = Ticket.objects.create(external_id="next", subject="Refund", body="I was charged twice for my plan")
    prediction = route_ticket(ticket.pk)
    assert prediction.model_version == first and prediction.scorer == "self-trained"

    # The same stream where no team may lose a single ticket: the head moves a few, so the volume guard
    # rejects it, named with its numbers; the champion stays.
    selftrain_settings.TRIAGE_SELFTRAIN_MAX_VOLUME_LOSS = 0.0
    second = build()
    assert (second.status, second.metrics["guard"]) == ("rejected", "volume"), second.metrics["reason"]
    worst = second.metrics["guards"][1]["numbers"]
    assert worst["worst_loss"] > 0 and f"{worst['worst_team']} would lose" in second.metrics["reason"]
    assert ModelVersion.objects.champion() == first
    page = admin_client_ada.get(reverse("learning:model_version", args=[second.pk])).content.decode()
    assert 'data-testid="deciding-guard">volume<' in page and "at most 0% allowed" in page

    # Drift: a new team makes a new zero-shot version that routes at once, and a rebuild is queued.

    Team.objects.create(slug="warranty", name="Warranty & Repairs", description="Broken devices under warranty.")
    now = serving_version(team_classes(routable_teams()))
    assert now.version.scorer == "embedding" and now.version.status == "champion" and now.version.trigger == "teams"
    assert ModelVersion.objects.get(pk=first.pk).status == "retired"
    check = check_selftrain_trigger()
    assert (check.fire, check.trigger) == (True, "teams") and "the teams changed since" in check.reason


@pytest.mark.slow  # embeds the stream with bge and fits a head: about a minute on a shared CPU
def test_agents_labels_judge_it_and_calibrate_it_but_never_shape_it(selftrain_settings):
    demo_teams(FOUR)
    tickets = store_demo_stream(FOUR)
    zero_shot_champion()
    without = build()

    # Agents label 30 tickets (the demo's own teams: the tests' eyes only). Nothing else changes.
    truth = {r["subject"]: r["team"] for r in demo_tickets(FOUR)}
    teams = {t.slug: t for t in Team.objects.all()}
    for ticket in tickets[:30]:
        record_label(ticket, teams[truth[ticket.subject]], agent=None, kind=Correction.Kind.CORRECTED)
    with_labels = build()

    # The head is the same to the last bit: the labels were not read to fit it.
    a, b = head_arrays(without), head_arrays(with_labels)
    assert all(np.array_equal(a[k], b[k]) for k in ("classes", "coef", "intercept"))
    guard = with_labels.metrics["guards"][2]
    assert guard["name"] == "labels" and guard["numbers"]["labels"] == 30
    assert guard["numbers"]["champion"] == without.version  # the champion it had to match
    assert with_labels.calibration["source"] == "30 agents' labels" and with_labels.thresholds


# --- Bad input: clear messages, no promotion, the zero-shot version keeps serving -------------------------
def rejected_build(expected_guard: str) -> ModelVersion:
    zero_shot = zero_shot_champion()
    version = build()
    assert (version.status, version.metrics["guard"]) == ("rejected", expected_guard), version.metrics
    assert ModelVersion.objects.champion() == zero_shot
    assert serving_version(team_classes(routable_teams())).version == zero_shot
    assert not version.artifact_path
    return version


def test_too_few_tickets_per_team_is_refused_before_any_model_runs(selftrain_settings):
    demo_teams(FOUR)
    store_demo_stream(FOUR[:1])  # billing's tickets only: 42 of the 80 needed
    version = rejected_build("stream")
    assert "at least 20 distinct tickets per team (80 for 4 teams); the stream has 42" in version.metrics["reason"]


def test_one_ticket_flooding_the_stream_counts_once(selftrain_settings):
    demo_teams(FOUR)
    store_tickets(
        [("Parcel late", "Where is my parcel? Order 1234")] * 300
        + [(f"Question {i}", "About my invoice") for i in range(5)]
    )
    version = rejected_build("stream")
    assert "the stream has 2 (303 duplicates dropped)" in version.metrics["reason"]


def test_a_stream_in_another_language_is_refused(selftrain_settings):
    demo_teams(FOUR)
    store_tickets([(a[:30], f"{a} {b}") for a in GERMAN for b in GERMAN if a != b])  # 90 distinct tickets
    version = rejected_build("language")
    assert "read as language 'en'" in version.metrics["reason"]
    assert "the embedder cannot learn from it" in version.metrics["reason"]


@pytest.mark.slow  # embeds the stream with bge and fits a head: about a minute on a shared CPU
def test_a_team_no_ticket_is_confidently_about_is_refused(selftrain_settings):
    demo_teams(FOUR)
    Team.objects.create(
        slug="volcanology",
        name="Volcanology grants",
        description="Research grants for volcano field work, lava sampling permits and seismograph loans.",
    )
    store_demo_stream(FOUR)
    version = rejected_build("starved")
    assert version.metrics["reason"].startswith("no confident tickets for volcanology")
    assert version.metrics["stream"]["starved"] == ["volcanology"]


# --- The trigger ----------------------------------------------------------------------------------------
def test_the_trigger_fires_every_n_new_tickets_and_never_over_a_model_trained_on_labels(settings):
    settings.TRIAGE_SELFTRAIN_EVERY = 30
    demo_teams(FOUR)
    store_tickets([(f"Ticket {i}", "Help") for i in range(29)])
    assert check_selftrain_trigger().reason == "29 new tickets since the last self-trained build; 30 needed"
    store_tickets([("Ticket 30", "Help")])
    check = check_selftrain_trigger()
    assert (check.fire, check.trigger) == (True, "tickets")

    version = request_self_training(trigger=check.trigger, enqueue=False)
    assert not check_selftrain_trigger().fire  # counted from the build just requested
    store_tickets([(f"More {i}", "Help") for i in range(30)])
    assert check_selftrain_trigger().reason == f"training run #{version.training_run.pk} is already queued"

    TrainingRun.objects.filter(model_version=version).update(state="failed")
    ModelVersion.objects.create(scorer="setfit", model_ref="m", version="setfit-1", status="champion")
    assert check_selftrain_trigger().reason == "setfit-1, trained on agents' labels, is the champion"


# --- Worker start ---------------------------------------------------------------------------------------
def test_a_worker_records_the_zero_shot_version_of_todays_teams_at_start(selftrain_settings):
    from mlops.models import ScorerHealth
    from triage.routing import warm_routing

    demo_teams(FOUR)
    warm_routing()
    health = ScorerHealth.objects.get()
    assert health.active_version.version == serving_version(team_classes(routable_teams())).version.version
    assert "-t" in health.active_version.version


# --- Labels win ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_setfit_version_trained_on_labels_is_compared_with_a_self_trained_champion_and_replaces_it(
    selftrain_settings,
):
    from learning.tasks import train_model_task
    from learning.trigger import request_training
    from tests.retraining.conftest import TEST_RECIPE

    demo_teams(FOUR)
    tickets = store_demo_stream(FOUR)
    zero_shot_champion()
    self_trained = build()
    assert self_trained.status == "champion"

    truth = {r["subject"]: r["team"] for r in demo_tickets(FOUR)}
    teams = {t.slug: t for t in Team.objects.all()}
    per_team: dict[str, int] = {}
    for ticket in tickets:
        slug = truth[ticket.subject]
        if per_team.get(slug, 0) < 10:
            record_label(ticket, teams[slug], agent=None, kind=Correction.Kind.CORRECTED)
            per_team[slug] = per_team.get(slug, 0) + 1
    selftrain_settings.TRIAGE_SETFIT_RECIPE = TEST_RECIPE
    # Promote whatever the held-out comparison says: this test is about the path, not about who wins.
    selftrain_settings.TRIAGE_PROMOTION_MARGIN = -1.0
    setfit = request_training(trigger="manual", enqueue=False)
    assert train_model_task.run(setfit.pk) == "champion"
    setfit.refresh_from_db()
    assert setfit.metrics["champion"]["version"] == self_trained.version  # compared with the self-trained head
    assert setfit.metrics["champion"]["n"] == setfit.metrics["split"]["holdout"]
    assert ModelVersion.objects.get(pk=self_trained.pk).status == "retired"

    # Labels serve now: the trigger stays quiet and a build pressed anyway is refused, saying why.
    assert check_selftrain_trigger().reason == "setfit-1, trained on agents' labels, is the champion"
    refused = build()
    assert (refused.status, refused.metrics["guard"]) == ("rejected", "champion")
    assert ModelVersion.objects.champion() == setfit
