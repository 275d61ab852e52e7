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
from tags.models import TagPrediction
from tags.scoring import score_tags
from tags.services import create_tag_set
from tests.retraining.builders import label_topics, label_urgency
from triage.models import Ticket

STEPS = 2  # a few contrastive steps: the real trainer, short enough for a shared 2-core CPU


@pytest.fixture
def tag_training(settings, artifacts):
    settings.TRIAGE_TAG_MIN_LABELS_PER_TAG = 5
    settings.TRIAGE_RETRAIN_MIN_NEW_LABELS = 1
    settings.TRIAGE_TAG_SETFIT_STEPS = STEPS
    settings.TRIAGE_RETRAIN_HOLDOUT = 0.3
    settings.TRIAGE_TAG_SCORER = "embedding"
    return settings


@pytest.mark.django_db
def test_the_trigger_waits_for_enough_labels_saying_each_tag_fits(tag_training, agent_alice):
    tag_training.TRIAGE_TAG_MIN_LABELS_PER_TAG = 10
    label_topics(agent_alice)
    from tags.models import TagSet

    topics = TagSet.objects.get(slug="topics")
    check = check_tag_trigger(topics)
    assert not check.fire and check.reason == "each tag needs 10 labels saying it fits; outage has 9, security has 9"
    assert check.counts == {"outage": 9, "security": 9} and check.need == 10
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
    # Each step was reported as routing's are: after the run the progress keeps how far the body went.
    progress = version.training_run.progress
    assert (progress["body_step"], progress["body_total_steps"]) == (STEPS, STEPS)
    assert (progress["phase"], progress["step"], progress["total_steps"]) == ("head", 1, 1)
    panel = admin_client_ada.get(reverse("learning:training_run", args=[version.training_run.pk])).content.decode()
    assert f"fine-tuning ran {STEPS} of {STEPS} steps" in panel
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

    # A worker (re)starting loads the champion before its first batch; that batch then finds it loaded.
    from mlops.inference import setfit_tags
    from tags.scoring import warm_tag_scorers

    setfit_tags._CACHE.clear()
    warm_tag_scorers()
    (key,) = setfit_tags._CACHE
    warmed = setfit_tags._CACHE[key]
    assert key == (version.artifact_path, version.version)
    ticket = Ticket.objects.create(subject="Down", body="Your whole site is down and nothing loads")
    predictions = score_tags([ticket])[ticket.pk]
    assert list(setfit_tags._CACHE.values()) == [warmed]  # the warmed model scored it; nothing loaded again
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
def test_with_no_fine_tuning_the_head_serves_on_the_workers_embedder_without_a_body_of_its_own(
    tag_training, agent_alice, caplog
):
    """``TRIAGE_TAG_SETFIT_STEPS=0``: the head is fitted on the packaged embedder's embeddings, saved without a
    body, and a worker scores with its one embedder, the one routing uses (no second MiniLM per tag set)."""
    import json

    from mlops.inference import setfit_tags
    from mlops.inference.encoders import get_embedder
    from mlops.text import clean_ask
    from tags.models import TagSet
    from tags.scoring import warm_tag_scorers

    tag_training.TRIAGE_TAG_SETFIT_STEPS = 0
    label_urgency(agent_alice)
    urgency = TagSet.objects.get(slug="urgency")
    version = request_tag_training(urgency, trigger="manual", enqueue=False)
    ModelVersion.objects.filter(pk=version.pk).update(config={**version.config, "promotion_margin": -1.0})
    assert train_tag_model_task.run(version.pk) == "champion"
    version.refresh_from_db()
    saved = sorted(p.name for p in Path(version.artifact_path).iterdir())
    assert saved == ["model_head.pkl", "triage_tags.json"]  # no body, no tokenizer: a head of a few KB
    meta = json.loads((Path(version.artifact_path) / "triage_tags.json").read_text())
    assert meta["body"] == "embedder" and meta["embedder_version"] == get_embedder().version
    assert version.training_run.progress["phase"] == "head" and "body_total_steps" not in version.training_run.progress

    setfit_tags._CACHE.clear()
    warm_tag_scorers()
    (loaded,) = setfit_tags._CACHE.values()
    assert loaded.shares_embedder and loaded.model.embedder is get_embedder()
    assert type(loaded.head).__name__ == "LogisticRegressionCV" and loaded.labels == ["high", "low"]
    ticket = Ticket.objects.create(subject="Down", body="Your whole site is down and nothing loads")
    predictions = [p for p in score_tags([ticket])[ticket.pk] if p.tag.tag_set_id == urgency.pk]
    assert {p.scorer for p in predictions} == {"setfit"} and {p.model_version_id for p in predictions} == {version.pk}
    # Written out: the head's probabilities on the embedder's embedding of the ticket's ask.
    expected = loaded.head.predict_proba(get_embedder().encode([clean_ask(ticket.text)]))[0]
    assert {p.tag.slug: p.probability for p in predictions} == pytest.approx(
        dict(zip(["high", "low"], expected, strict=True))
    )

    # A head fitted on another embedder's vectors means nothing on this one: not served, zero-shot tags the set.
    (Path(version.artifact_path) / "triage_tags.json").write_text(json.dumps({**meta, "embedder_version": "other@1"}))
    setfit_tags._CACHE.clear()
    other = Ticket.objects.create(subject="Down", body="Nothing loads")
    scorers = {p.scorer for p in score_tags([other])[other.pk] if p.tag.tag_set_id == urgency.pk}
    assert scorers == {"embedding"} and "was fitted on the embeddings of other@1" in caplog.text


@pytest.mark.django_db
def test_too_few_labels_fail_the_run_with_the_reason_and_nothing_serves(tag_training, agent_alice):
    from tags.models import TagSet

    label_topics(agent_alice)
    version = request_tag_training(TagSet.objects.get(slug="topics"), trigger="manual", enqueue=False)
    # Queued with enough labels; by the time it runs, the set needs more than it has (as when labels are removed).
    ModelVersion.objects.filter(pk=version.pk).update(config={**version.config, "min_labels_per_tag": 50})
    assert train_tag_model_task.run(version.pk) == "failed"
    version.refresh_from_db()
    assert (
        version.status == "failed"
        and version.error == "each tag needs 50 labels saying it fits; outage has 9, security has 9"
    )
    assert ModelVersion.objects.champion(task=tag_task("topics")) is None


@pytest.mark.django_db
def test_warming_a_tag_champion_whose_files_are_gone_logs_it_and_the_worker_starts(tmp_path, caplog):
    from mlops.inference import setfit_tags
    from tags.scoring import warm_tag_scorers

    create_tag_set("Topics", kind="multi", tags=[{"name": "outage"}])
    ModelVersion.objects.create(
        scorer="setfit-tags",
        model_ref="m",
        version="setfit-tags-1",
        status="champion",
        task=tag_task("topics"),
        artifact_path=str(tmp_path / "gone"),
    )
    setfit_tags._CACHE.clear()
    warm_tag_scorers()
    assert not setfit_tags._CACHE and "champion setfit-tags:setfit-tags-1 cannot load" in caplog.text


@pytest.mark.django_db
def test_with_no_champion_the_zero_shot_side_is_read_at_thresholds_fitted_on_the_training_side(
    tag_training, agent_alice, admin_ada
):
    """Topics shipped at threshold 1.0 (as the demo's) would read as never set, F1 0 for every tag: the
    comparison instead fits each tag's F1-best threshold on the training tickets and applies it to the
    held-out ones (checked against a direct count)."""
    import numpy as np

    from learning.tag_retraining import held_out, predicted_sets, serving_side, tag_scores
    from tags.models import TagSet
    from tags.scoring import TagSetSpec, score_tag_set, zero_shot_scorer
    from tags.services import set_tag_threshold

    topics = label_topics(agent_alice)
    for tag in topics.tags.all():
        set_tag_threshold(tag, 1.0, user=admin_ada)
    data = collect_tag_examples(topics)
    holdout = np.array([held_out(t, 0.3) for t in data.ticket_ids])
    train = ~holdout
    spec = TagSetSpec.from_row(TagSet.objects.scorable().get(pk=topics.pk))
    side = serving_side(spec, data, train, holdout)

    # Written out: the zero-shot scores of the training tickets, each tag's threshold with the best F1 on them
    # (the highest such threshold on a tie), then the held-out tickets at or above it.
    probs = score_tag_set(data.texts, spec, zero_shot_scorer()).probabilities  # spec.tags are in slug order too
    expected = {}
    for j, slug in enumerate(data.labels):
        p, truth = probs[train, j], data.y[train, j]
        best = max(
            sorted(set(p.tolist()), reverse=True),
            key=lambda t: (2 * (truth & (p >= t)).sum() / ((p >= t).sum() + truth.sum()), t),
        )
        expected[slug] = best
    assert side.thresholds == pytest.approx(expected)
    assert (side.predicted == (probs[holdout] >= np.array([expected[s] for s in data.labels]))).all()
    assert side.name.startswith("zero-shot (embedding") and "fitted for F1 on the" in side.rule

    y, known = data.y[holdout], data.known[holdout]
    fair = tag_scores(y, known, side.predicted, data.labels, False)
    at_saved = tag_scores(y, known, predicted_sets(probs[holdout], False, [1.0, 1.0]), data.labels, False)
    assert at_saved["macro_f1"] == 0.0  # what the comparison read before: a challenger beat "never set"
    assert fair["macro_f1"] > 0.0


def test_a_multi_label_head_on_the_shared_embedder_is_one_vs_rest_class_balanced_and_saved_without_a_body(tmp_path):
    import numpy as np

    from mlops.inference.setfit_tags import TagSetFitModel, save_tag_model, train_tag_setfit
    from tests.retraining.builders import OTHER, OUTAGE, SECURITY

    texts = OUTAGE + SECURITY + OTHER
    targets = [[1, 0]] * len(OUTAGE) + [[0, 1]] * len(SECURITY) + [[0, 0]] * len(OTHER)
    model = train_tag_setfit(texts, targets, labels=["outage", "security"], multi_label=True, base_model="", steps=0)
    path = save_tag_model(model, tmp_path / "m", labels=["outage", "security"], multi_label=True, meta={})
    assert sorted(p.name for p in path.iterdir()) == ["model_head.pkl", "triage_tags.json"]
    loaded = TagSetFitModel(path)
    assert type(loaded.head).__name__ == "OneVsRestClassifier" and loaded.head.estimator.class_weight == "balanced"
    probs = loaded.probabilities([OUTAGE[0], SECURITY[0], OTHER[0]])
    assert probs.shape == (3, 2) and not np.allclose(probs.sum(axis=1), 1.0)  # each tag on its own
    assert probs[0, 0] > 0.5 > probs[0, 1] and probs[1, 1] > 0.5 > probs[1, 0]  # its own training tickets
