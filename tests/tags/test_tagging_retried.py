"""Tagging that fails in the routing batch is not lost: its ``tag`` job waits for the sweeper, whose task
tags the ticket once the scorer can load.

The failure is one the product produces: the zero-shot tag scorer's models are not on disk yet (no NLI
model, no embedder, no cross-encoder at the configured paths: ``resolve_scorer`` has nothing to fall
back to), as when the models volume is still being filled while tickets are routed. Then the NLI model
arrives (a tiny real one, copied into place).
"""

from __future__ import annotations

import functools
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from mlops.inference import encoders, registry
from mlops.inference.encoders import ModelUnavailable
from tags.models import TagPrediction
from tags.services import create_tag_set
from tags.tasks import TAG, score_tags_task
from tests.workers import celery_worker, purge_queues, wait_for
from triage.models import Ticket, TicketJob
from triage.signals import tickets_routed
from triage.work import UNSENT_GRACE, sweep_work

TEXT = "Die Heizung geht seit gestern nicht mehr an und es ist kalt. Bitte helfen Sie mir schnell."


def model_settings(tmp_path) -> dict[str, str]:
    models = tmp_path / "models"
    return {
        "TRIAGE_TAG_SCORER": "nli",
        "TRIAGE_NLI_MODEL": str(models / "nli"),
        "TRIAGE_NLI_BACKEND": "torch",
        "TRIAGE_NLI_DTYPE": "float32",
        "TRIAGE_EMBEDDER_MODEL": str(models / "embedder"),
        "TRIAGE_RERANKER_MODEL": str(models / "reranker"),
    }


def tag_sets() -> None:
    create_tag_set(
        "Language",
        kind="single",
        method="language",
        tags=[{"slug": "en", "name": "English"}, {"slug": "de", "name": "German"}],
    )
    create_tag_set(
        "Urgency",
        kind="single",
        tags=[
            {"slug": "low", "name": "Low", "description": "Can wait."},
            {"slug": "high", "name": "High", "description": "Needs help now."},
        ],
    )


def routed_while_no_scorer_loads(settings, tmp_path, monkeypatch) -> Ticket:
    """A ticket routed (the signal routing sends) while the tag scorer's models are missing."""
    for name, value in model_settings(tmp_path).items():
        setattr(settings, name, value)
    monkeypatch.setattr(registry, "RETRY_FAILED_AFTER_SECONDS", 0)  # a model that arrives is tried at once
    # This process's embedder and cross-encoder, loaded by earlier tests, are not the missing ones
    # configured here: load those afresh (the process-wide ones come back after the test).
    for getter in ("get_embedder", "get_cross_encoder"):
        monkeypatch.setattr(encoders, getter, functools.cache(getattr(encoders, getter).__wrapped__))
    registry.forget_scorers()
    tag_sets()
    ticket = Ticket.objects.create(subject="Heizung", body=TEXT)
    responses = tickets_routed.send_robust(sender=None, ticket_ids=[ticket.pk])
    errors = [error for _, error in responses if isinstance(error, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ModelUnavailable)  # routing's caller logs it
    assert not TagPrediction.objects.filter(ticket=ticket).exists()  # nothing half-stored
    job = TicketJob.objects.get(ticket=ticket, kind=TAG)
    # Given back and never sent: the sweeper's to send.
    assert (job.done_at, job.sent_at, job.claim, job.claimed_until) == (None, None, "", None)
    return ticket


def assert_tagged(ticket: Ticket) -> None:
    job = TicketJob.objects.get(ticket=ticket, kind=TAG)
    assert job.done_at is not None and job.error == ""
    shown = dict(
        TagPrediction.objects.filter(ticket=ticket, is_set=True).values_list("tag__tag_set__slug", "tag__slug")
    )
    assert shown["language"] == "de"
    assert TagPrediction.objects.filter(ticket=ticket, tag__tag_set__slug="urgency", scorer="nli").count() == 2


@pytest.mark.django_db
def test_a_tagging_failure_in_the_routing_batch_is_sent_again_and_the_ticket_gets_its_tags(
    settings, tmp_path, monkeypatch, tiny_nli
):
    ticket = routed_while_no_scorer_loads(settings, tmp_path, monkeypatch)
    purge_queues()
    try:
        # Still missing: the task fails again, the job is given back once more.
        with pytest.raises(ModelUnavailable):
            score_tags_task.apply(args=[ticket.pk], throw=True, retries=score_tags_task.max_retries)
        assert TicketJob.objects.get(ticket=ticket, kind=TAG).claim == ""

        shutil.copytree(tiny_nli, settings.TRIAGE_NLI_MODEL)  # the model arrives
        report = sweep_work(now=timezone.now() + UNSENT_GRACE + timedelta(seconds=1))
        assert report.sent == 1  # the tag job, through the real broker
        assert score_tags_task.apply(args=[ticket.pk], throw=True).get() == 4  # what the sent message runs
    finally:
        purge_queues()
        registry.forget_scorers()
    assert_tagged(ticket)
    assert not sweep_work(now=timezone.now() + timedelta(days=1)).sent  # done: nothing left to send


@pytest.mark.django_db
def test_tags_scored_in_the_routing_batch_are_done_there_and_never_sent(settings):
    create_tag_set(
        "Language",
        kind="single",
        method="language",
        tags=[{"slug": "en", "name": "English"}, {"slug": "de", "name": "German"}],
    )
    ticket = Ticket.objects.create(subject="Heizung", body=TEXT)
    responses = tickets_routed.send_robust(sender=None, ticket_ids=[ticket.pk])
    assert all(not isinstance(error, Exception) for _, error in responses)
    job = TicketJob.objects.get(ticket=ticket, kind=TAG)
    assert job.done_at is not None and (job.sent_at, job.sends, job.claim) == (None, 0, "")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_tags_the_ticket_the_sweeper_sends_once_the_model_is_there(
    settings, tmp_path, monkeypatch, tiny_nli
):
    ticket = routed_while_no_scorer_loads(settings, tmp_path, monkeypatch)
    shutil.copytree(tiny_nli, settings.TRIAGE_NLI_MODEL)
    purge_queues()
    env = {**model_settings(tmp_path), "TRIAGE_WARM_MODELS": "0"}
    with celery_worker(queues="inference", extra_env=env):
        assert sweep_work(now=timezone.now() + UNSENT_GRACE + timedelta(seconds=1)).sent == 1
        wait_for(
            lambda: TicketJob.objects.filter(ticket=ticket, kind=TAG, done_at__isnull=False).exists(),
            timeout=180,
            message="the worker to tag the ticket",
        )
    registry.forget_scorers()
    assert_tagged(ticket)
