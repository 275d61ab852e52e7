"""The registry page's "Train tags": an admin queues one tag set's SetFit head on the training queue, as
"Retrain now" queues routing's; refused with the counts when a tag lacks labels, never two runs at once."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from mlops.models import ModelVersion, TrainingRun, tag_task
from tests.retraining.builders import label_topics
from tests.workers import purge_queues

pytestmark = pytest.mark.django_db


@pytest.fixture
def topics(settings, agent_alice):
    settings.TRIAGE_TAG_MIN_LABELS_PER_TAG = 9
    return label_topics(agent_alice)


def _train(client, slug="topics"):
    return client.post(reverse("learning:train_tags", args=[slug]), follow=True)


def _training_queue() -> list[dict]:
    from config.celery import app

    with app.connection_for_read() as conn:
        return [json.loads(raw) for raw in conn.default_channel.client.lrange("training", 0, -1)]


def test_an_admin_queues_a_tag_sets_training_on_the_training_queue(
    admin_client_ada, admin_ada, topics, django_capture_on_commit_callbacks
):
    purge_queues()
    page = admin_client_ada.get(reverse("learning:models")).content.decode()
    assert 'data-testid="train-tags-topics"' in page and "Ready: every tag has ≥ 9 labels" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = _train(admin_client_ada)
    version = ModelVersion.objects.get(status="training")
    assert (version.task, version.scorer, version.trigger, version.triggered_by) == (
        tag_task("topics"),
        "setfit-tags",
        "manual",
        admin_ada,
    )
    assert f"Tag training {version.version} for Topics queued" in response.content.decode()
    (message,) = _training_queue()
    assert message["headers"]["task"] == "learning.tasks.train_tag_model_task"
    assert message["headers"]["argsrepr"] == f"({version.pk},)"
    assert version.training_run.sends == 1
    # The registry shows the run's live panel in the tag section and who asked for it in the versions table.
    page = response.content.decode()
    assert 'id="training-run"' in page and page.index('id="training-run"') > page.index('id="tag-training"')
    assert ">ada<" in page


def test_too_few_labels_are_refused_with_each_tags_count_and_nothing_stored(admin_client_ada, topics, settings):
    settings.TRIAGE_TAG_MIN_LABELS_PER_TAG = 12
    response = _train(admin_client_ada).content.decode()
    assert (
        "Not queued: Topics cannot be trained: each tag needs 12 labels saying it fits; outage has 9, security has 9"
        in response
    )
    assert not ModelVersion.objects.exists() and not TrainingRun.objects.exists()
    assert 'data-testid="train-tags-topics" disabled' in response  # the page says why before anyone presses


def test_a_second_run_is_refused_while_one_is_queued_whatever_its_kind(
    admin_client_ada, topics, django_capture_on_commit_callbacks
):
    admin_client_ada.post(reverse("learning:retrain"))  # routing's run, queued
    response = _train(admin_client_ada).content.decode()
    assert "Not queued: training run #" in response and "is already queued" in response
    assert ModelVersion.objects.filter(task=tag_task("topics")).count() == 0
    TrainingRun.objects.update(state=TrainingRun.State.FAILED)
    _train(admin_client_ada)
    assert "already queued" in _train(admin_client_ada).content.decode()
    assert ModelVersion.objects.filter(task=tag_task("topics")).count() == 1


def test_a_language_set_or_an_unknown_set_is_not_trained(admin_client_ada, topics):
    from tags.services import create_tag_set

    create_tag_set("Language", kind="single", method="language", tags=[{"slug": "en", "name": "English"},
                                                                       {"slug": "de", "name": "German"}])  # fmt: skip
    assert "only active zero-shot tag sets are trained" in _train(admin_client_ada, "language").content.decode()
    assert admin_client_ada.post(reverse("learning:train_tags", args=["nope"])).status_code == 404
    assert not ModelVersion.objects.exists()


def test_agents_get_403_anonymous_visitors_the_login_page_and_a_post_without_csrf_is_refused(
    client, agent_alice, admin_ada, topics
):
    url = reverse("learning:train_tags", args=["topics"])
    assert client.post(url).status_code == 302
    client.force_login(agent_alice)
    assert client.post(url).status_code == 403
    assert client.get(url).status_code in (403, 405)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_ada)
    assert strict.post(url).status_code == 403
    assert not ModelVersion.objects.exists()
