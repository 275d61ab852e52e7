"""The routing status line in every page's header: one short line for agents, the details for admins."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from mlops import health
from mlops.models import ModelVersion, ScorerHealth

# What a worker without network reported before offline-by-default (transformers' own text, two lines).
HUB_ERROR = (
    "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached "
    "files.\nCheck your internet connection or see how to run the library in offline mode at "
    "'https://huggingface.co/docs/transformers/installation#offline-mode'."
)


@pytest.fixture
def degraded_routing(db):
    """A worker reported that the NLI model could not load and that the ensemble version serves."""
    requested = settings.TRIAGE_ROUTING_SCORER or "auto"
    model_ref = health.requested_model_ref(requested)
    version = ModelVersion.objects.create(
        scorer="ensemble", model_ref="packaged", version="ensemble-3fa2c1", status=ModelVersion.Status.CHAMPION
    )
    ScorerHealth.objects.create(
        host="worker-1",
        requested=requested,
        model_ref=model_ref,
        active_scorer="ensemble",
        active_version=version,
        ok=False,
        message=f"NLI model {model_ref!r} could not be loaded ({HUB_ERROR}); routing with ensemble",
    )
    health._status_cache.clear()  # the status is cached for 30 s per process
    yield model_ref
    health._status_cache.clear()


def test_agents_see_one_short_line_saying_what_routes(client, agent_alice, degraded_routing):
    client.force_login(agent_alice)
    body = client.get(reverse("triage:queue")).content.decode()
    assert (
        '<p class="routing-status" role="status" data-testid="routing-status">Routing with the offline ensemble</p>'
        in body
    )
    assert "huggingface" not in body and "could not be loaded" not in body and degraded_routing not in body


def test_admins_see_the_model_the_error_and_what_to_do(client, admin_ada, degraded_routing):
    client.force_login(admin_ada)
    body = client.get(reverse("triage:queue")).content.decode()
    assert "<summary>Routing with the offline ensemble</summary>" in body
    assert degraded_routing in body  # the configured model
    assert "could not be loaded (We couldn&#x27;t connect to &#x27;https://huggingface.co&#x27;" in body
    assert "Set TRIAGE_NLI_MODEL to a local directory" in body


def test_a_trained_champion_is_named_and_the_nli_problem_no_longer_shows(
    client, agent_alice, degraded_routing, tmp_path
):
    ModelVersion.objects.update(status=ModelVersion.Status.RETIRED)
    (tmp_path / "model_head.pkl").write_bytes(b"")  # what promotion and the status look for on disk
    ModelVersion.objects.create(
        scorer="setfit",
        model_ref="packaged",
        version="setfit-4",
        artifact_path=str(tmp_path),
        status=ModelVersion.Status.CHAMPION,
    )
    status = health.routing_status()
    assert not status and status.summary == "Routing with the trained model setfit-4"
    client.force_login(agent_alice)
    assert "routing-status" not in client.get(reverse("triage:queue")).content.decode()


def test_the_line_follows_the_local_probe_before_any_worker_reported(client, agent_alice, settings, tmp_path):
    settings.TRIAGE_ROUTING_SCORER = "auto"
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "missing-nli")
    health._status_cache.clear()
    client.force_login(agent_alice)
    body = client.get(reverse("triage:queue")).content.decode()
    assert ">Routing with the offline ensemble</p>" in body and "missing-nli" not in body


def test_nobody_logged_out_sees_it(client, degraded_routing):
    assert "routing-status" not in client.get(reverse("login")).content.decode()
