"""A SetFit head per tag set: trained for real (packaged MiniLM, a few steps) on agents' tag labels, compared
with the serving tag scorer by macro-F1 over tags, promoted by the routing rule, then serving the set."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from learning.evaluation import compare_challenger
from learning.tag_retraining import check_tag_trigger, collect_tag_examples, request_tag_training
from learning.tasks import train_tag_model_task
from mlops.models import ModelVersion, tag_task
from tags.models import TagLabel, TagPrediction
from tags.scoring import score_tags
from tags.services import create_tag_set
from triage.models import Ticket

OUTAGE = [
    "The whole site is down, nothing loads for any of our users",
    "Your API returns 503 for every request since this morning",
    "Dashboard unreachable, servers not responding at all",
    "Checkout page times out for everyone, total outage",
    "Service unavailable error on every page of the app",
    "Nothing works, the platform has been offline for an hour",
    "Login page will not load, your servers seem to be down",
    "All our integrations fail, the service is completely down",
    "The mobile app cannot reach your servers, outage everywhere",
]
SECURITY = [
    "Someone logged into my account from another country",
    "I received a phishing email pretending to be your support team",
    "My password was changed without me doing it",
    "Suspicious login alerts keep coming, I think I was hacked",
    "A stranger accessed our admin account and changed the settings",
    "Unknown device signed in to my account last night",
    "There is a security hole, I can see other customers' data",
    "Fraudulent charges after my account was compromised",
    "Two-factor codes arrive that I never requested, account attack",
]
OTHER = [
    "How do I change the billing address on my invoice",
    "Can I export my data to a spreadsheet",
    "Please add a dark mode to the settings page",
    "Where can I find last month's invoice",
    "How do I invite a colleague to my workspace",
    "Is there a discount for yearly plans",
    "What file formats can I upload",
    "I would like to change my username",
    "Thanks for the quick help yesterday",
]
STEPS = 2  # a few contrastive steps: the real trainer, short enough for a shared 2-core CPU


@pytest.fixture
def tag_training(settings, artifacts):
    settings.TRIAGE_TAG_MIN_LABELS_PER_TAG = 5
    settings.TRIAGE_RETRAIN_MIN_NEW_LABELS = 1
    settings.TRIAGE_TAG_SETFIT_STEPS = STEPS
    settings.TRIAGE_RETRAIN_HOLDOUT = 0.3
    settings.TRIAGE_TAG_SCORER = "embedding"
    return settings


def label_topics(agent) -> None:
    topics = create_tag_set("Topics", kind="multi", tags=[{"name": "outage"}, {"name": "security"}])
    outage, security = topics.tags.get(slug="outage"), topics.tags.get(slug="security")
    for texts, fits in ((OUTAGE, {outage}), (SECURITY, {security}), (OTHER, set())):
        for text in texts:
            ticket = Ticket.objects.create(subject=text[:40], body=text)
            for tag in (outage, security):
                action = TagLabel.Action.ADD if tag in fits else TagLabel.Action.REMOVE
                TagLabel.objects.create(ticket=ticket, tag=tag, action=action, agent=agent)


def label_urgency(agent) -> None:
    urgency = create_tag_set("Urgency", kind="single", tags=[{"name": "low"}, {"name": "high"}])
    high, low = urgency.tags.get(slug="high"), urgency.tags.get(slug="low")
    for texts, tag in ((OUTAGE + SECURITY, high), (OTHER + OTHER[:4], low)):
        for text in texts:
            ticket = Ticket.objects.create(subject="urgency", body=text)
            TagLabel.objects.create(ticket=ticket, tag=tag, action=TagLabel.Action.ADD, agent=agent)


@pytest.mark.django_db
def test_the_trigger_waits_for_enough_labels_saying_each_tag_fits(tag_training, agent_alice):
    tag_training.TRIAGE_TAG_MIN_LABELS_PER_TAG = 10
    label_topics(agent_alice)
    from tags.models import TagSet

    topics = TagSet.objects.get(slug="topics")
    check = check_tag_trigger(topics)
    assert not check.fire and "outage (9)" in check.reason and check.counts == {"outage": 9, "security": 9}
    tag_training.TRIAGE_TAG_MIN_LABELS_PER_TAG = 9
    assert check_tag_trigger(topics).fire
    data = collect_tag_examples(topics)
    assert data.labels == ["outage", "security"] and data.known.all() and len(data.ticket_ids) == 27


@pytest.mark.slow
@pytest.mark.django_db
def test_a_multi_label_set_trains_a_one_vs_rest_head_that_serves_once_it_wins(
    tag_training, agent_alice, admin_client_ada
):
    from tags.models import TagSet

    label_topics(agent_alice)
    topics = TagSet.objects.get(slug="topics")
    version = request_tag_training(topics, trigger="manual", enqueue=False)
    # A margin of -1 promotes any challenger: this test is about what serves after a promotion.
    ModelVersion.objects.filter(pk=version.pk).update(config={**version.config, "promotion_margin": -1.0})
    assert train_tag_model_task.run(version.pk) == "champion"
    version.refresh_from_db()
    assert version.task == tag_task("topics") and version.scorer == "setfit-tags"
    metrics = version.metrics
    assert metrics["decision"] == "promoted" and metrics["champion"]["version"].startswith("zero-shot (embedding")
    assert 0.0 <= metrics["challenger"]["macro_f1"] <= 1.0 and metrics["split"]["holdout"] >= 1
    from mlops.inference.setfit_tags import TagSetFitModel

    model = TagSetFitModel(version.artifact_path)
    assert type(model.model.model_head).__name__ == "OneVsRestClassifier" and model.labels == ["outage", "security"]
    assert model.model.model_head.estimator.class_weight == "balanced"  # rare tags still reach 0.5
    assert not (Path.cwd() / "checkpoints").exists()  # the trainer's scratch files stay out of the working directory
    # The routing champion is untouched: one champion per task.
    assert ModelVersion.objects.champion() != version

    ticket = Ticket.objects.create(subject="Down", body="Your whole site is down and nothing loads")
    predictions = score_tags([ticket])[ticket.pk]
    assert {p.scorer for p in predictions} == {"setfit"} and {p.model_version_id for p in predictions} == {version.pk}
    probs = {p.tag.slug: p.probability for p in predictions}
    assert probs == pytest.approx(dict(zip(model.labels, model.probabilities([ticket.text])[0], strict=True)))

    page = admin_client_ada.get(reverse("learning:model_version", kwargs={"pk": version.pk})).content.decode()
    assert 'data-testid="tag-comparison"' in page and "the tag set topics" in page
    assert 'data-testid="version-task"' in admin_client_ada.get(reverse("learning:models")).content.decode()


@pytest.mark.slow
@pytest.mark.django_db
def test_a_single_label_set_gets_the_normal_head_and_is_rejected_unless_it_wins_by_the_margin(
    tag_training, agent_alice
):
    from tags.models import TagSet

    label_urgency(agent_alice)
    urgency = TagSet.objects.get(slug="urgency")
    version = request_tag_training(urgency, trigger="manual", enqueue=False)
    ModelVersion.objects.filter(pk=version.pk).update(config={**version.config, "promotion_margin": 1.5})
    assert train_tag_model_task.run(version.pk) == "rejected"
    version.refresh_from_db()
    metrics = version.metrics
    assert (metrics["decision"] == "promoted") == compare_challenger(
        metrics["challenger"]["macro_f1"], metrics["champion"]["macro_f1"], 1.5
    )[0]
    from mlops.inference.setfit_tags import TagSetFitModel

    model = TagSetFitModel(version.artifact_path)
    assert type(model.model.model_head).__name__ == "LogisticRegression" and model.labels == ["high", "low"]
    assert model.probabilities(["site down"]).sum() == pytest.approx(1.0)
    assert ModelVersion.objects.champion(task=tag_task("urgency")) is None
    ticket = Ticket.objects.create(subject="Down", body="Your whole site is down")
    assert {p.scorer for p in score_tags([ticket])[ticket.pk] if p.tag.tag_set_id == urgency.pk} == {"embedding"}
    assert not TagPrediction.objects.filter(model_version=version).exists()


@pytest.mark.django_db
def test_too_few_labels_fail_the_run_with_the_reason_and_nothing_serves(tag_training, agent_alice):
    from tags.models import TagSet

    label_topics(agent_alice)
    tag_training.TRIAGE_TAG_MIN_LABELS_PER_TAG = 50
    version = request_tag_training(TagSet.objects.get(slug="topics"), trigger="manual", enqueue=False)
    assert train_tag_model_task.run(version.pk) == "failed"
    version.refresh_from_db()
    assert (
        version.status == "failed" and "tags below 50 labels saying they fit: outage (9), security (9)" in version.error
    )
    assert ModelVersion.objects.champion(task=tag_task("topics")) is None
