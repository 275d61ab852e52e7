"""Drift: a team added or described anew makes the zero-shot version of the new teams and queues a
self-trained rebuild from the stream (``learning.selftrain.on_team_saved``, after the team's commit)."""

from __future__ import annotations

import pytest

from mlops.models import ModelVersion, TrainingRun
from mlops.registry import classes_fingerprint
from tests.selftrain.builders import demo_teams
from tests.workers import purge_queues
from triage.models import Team
from triage.routing import routable_teams, team_classes
from triage.team_services import describe_team
from triage.work import queue_length

pytestmark = pytest.mark.django_db


@pytest.fixture
def built_on_todays_teams(db):
    """The registry row of a self-trained build over today's teams (its files play no part here)."""
    demo_teams(["billing", "orders", "setup"])
    classes = team_classes(routable_teams())
    purge_queues()
    yield ModelVersion.objects.create(
        scorer="self-trained",
        model_ref="packaged:bge-small-en-v1.5",
        version="self-trained-1",
        status="rejected",
        config={"teams": {"fingerprint": classes_fingerprint(classes), "slugs": [c.slug for c in classes]}},
    )
    purge_queues()


def test_an_edited_description_queues_a_rebuild_from_the_stream(
    built_on_todays_teams, admin_ada, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        describe_team(Team.objects.get(slug="orders"), description="Parcels that are late or lost.", user=admin_ada)
    rebuild = ModelVersion.objects.exclude(pk=built_on_todays_teams.pk).get(scorer="self-trained")
    assert rebuild.trigger == "teams" and rebuild.training_run.state == TrainingRun.State.QUEUED
    assert rebuild.training_run.sends == 1 and queue_length("training") == 1
    # The same save again changes nothing the router reads: no second rebuild.
    with django_capture_on_commit_callbacks(execute=True):
        Team.objects.get(slug="orders").save()
    assert ModelVersion.objects.filter(scorer="self-trained").count() == 2


def test_a_new_team_starts_its_zero_shot_version_at_once_and_queues_a_rebuild(
    built_on_todays_teams, django_capture_on_commit_callbacks
):
    champion = ModelVersion.objects.create(
        scorer="embedding",
        model_ref="m",
        version="embedding-x-t0",
        status="champion",
        config={"teams": {"fingerprint": built_on_todays_teams.config["teams"]["fingerprint"]}},
    )
    with django_capture_on_commit_callbacks(execute=True):
        Team.objects.create(slug="privacy", name="Privacy", description="Personal data and its deletion.")
    assert queue_length("inference") == 1  # start_zero_shot_version_task, for an inference worker
    assert ModelVersion.objects.filter(scorer="self-trained", trigger="teams").count() == 1
    assert ModelVersion.objects.champion() == champion  # the worker's task replaces it, not the web request
    purge_queues()


def test_without_a_self_trained_build_a_team_change_queues_nothing(db, django_capture_on_commit_callbacks):
    purge_queues()
    with django_capture_on_commit_callbacks(execute=True):
        demo_teams(["billing", "orders"])
    assert not TrainingRun.objects.exists() and queue_length("training") == 0
