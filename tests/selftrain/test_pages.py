"""The registry page's self-training panel, its button and the live progress of a build."""

from __future__ import annotations

import pytest
from django.urls import reverse

from learning.selftrain import request_self_training
from mlops.models import ModelVersion, TrainingRun
from tests.selftrain.builders import demo_teams, store_tickets

pytestmark = pytest.mark.django_db


def test_the_registry_page_says_when_the_next_build_comes_and_offers_the_button(admin_client_ada, settings):
    settings.TRIAGE_SELFTRAIN_EVERY = 500
    demo_teams(["billing", "orders"])
    store_tickets([(f"Ticket {i}", "Help") for i in range(12)])
    page = admin_client_ada.get(reverse("learning:models")).content.decode()
    assert "Not now: 12 new tickets since the last self-trained build; 500 needed." in page
    assert 'data-testid="self-train"' in page


def test_only_admins_start_a_build(agent_client):
    assert agent_client.post(reverse("learning:self_train")).status_code == 403
    assert not ModelVersion.objects.exists()


def test_a_second_request_while_one_is_queued_is_refused_with_the_reason(admin_client_ada):
    first = request_self_training(trigger="manual", enqueue=False)
    response = admin_client_ada.post(reverse("learning:self_train"), follow=True)
    run = TrainingRun.objects.get(model_version=first)
    assert f"Not queued: training run #{run.pk} ({first.version}) is already queued." in response.content.decode()
    assert ModelVersion.objects.filter(scorer="self-trained").count() == 1


def test_a_running_build_shows_how_far_it_got(admin_client_ada):
    version = request_self_training(trigger="manual", enqueue=False)
    TrainingRun.objects.filter(model_version=version).update(
        state="running", progress={"stage": "training", "phase": "embedding", "step": 64, "total_steps": 156}
    )
    run = TrainingRun.objects.get(model_version=version)
    panel = admin_client_ada.get(reverse("learning:training_run", args=[run.pk])).content.decode()
    assert "embedding step <strong>64</strong> of <strong>156</strong>" in panel and "epoch" not in panel
    assert 'hx-trigger="every 2s"' in admin_client_ada.get(reverse("learning:models")).content.decode()
