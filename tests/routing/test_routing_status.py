"""Saying which scorer routes: the start-up check, the status line, and the Django admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from mlops.health import _status_cache, routing_status
from mlops.inference.availability import check_routing_models, probe_model
from mlops.models import ScorerHealth
from triage.models import Team, TeamChange


@pytest.fixture(autouse=True)
def fresh_status():
    _status_cache.clear()
    yield
    _status_cache.clear()


def test_the_start_up_check_warns_when_the_nli_model_cannot_load(settings, tmp_path):
    settings.TRIAGE_ROUTING_SCORER = "auto"
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "missing-nli")
    (warning,) = check_routing_models()
    assert warning.id == "mlops.W001"
    assert warning.msg.startswith(f"NLI model '{tmp_path / 'missing-nli'}' could not be loaded (no such directory")
    assert warning.msg.endswith("; routing with ensemble")


def test_a_hub_id_that_is_not_cached_offline_is_reported(settings):
    settings.TRIAGE_MODELS_OFFLINE = True
    settings.TRIAGE_HUB_REASON = "https://huggingface.co did not answer within 1.5 s"
    settings.TRIAGE_ROUTING_SCORER = "nli"
    settings.TRIAGE_NLI_MODEL = "someone/nli-model-that-is-not-cached"
    (warning,) = check_routing_models()
    assert "not in the Hugging Face cache, and the hub is off (https://huggingface.co did not answer" in warning.msg


def test_no_warning_for_a_local_nli_model_or_an_offline_scorer(settings, nli_models):
    settings.TRIAGE_ROUTING_SCORER = "auto"
    settings.TRIAGE_NLI_MODEL = nli_models["bert"]
    assert check_routing_models() == []
    settings.TRIAGE_NLI_MODEL = "/nowhere"
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    assert check_routing_models() == []
    assert probe_model("packaged:all-MiniLM-L6-v2") == (True, "")


def test_manage_py_check_shows_the_warning(settings, tmp_path, capsys):
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "missing-nli")
    call_command("check")
    assert "mlops.W001" in capsys.readouterr().err


def test_the_status_line_is_quiet_when_routing_runs_as_configured(db, settings):
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    status = routing_status()
    assert not status and str(status) == "routing with embedding"


def test_the_status_line_speaks_when_nli_cannot_load(db, settings, tmp_path):
    settings.TRIAGE_ROUTING_SCORER = "auto"
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "missing-nli")
    status = routing_status()
    assert status and "could not be loaded" in str(status) and str(status).endswith("routing with ensemble")
    assert status.source == "probe"


def test_what_a_worker_reported_wins_over_the_local_probe(db, settings, nli_models):
    settings.TRIAGE_ROUTING_SCORER = "auto"
    settings.TRIAGE_NLI_MODEL = nli_models["bert"]  # loads here, but the worker says it could not
    ScorerHealth.objects.create(
        host="gpu-1",
        requested="auto",
        model_ref=nli_models["bert"],
        active_scorer="embedding",
        ok=False,
        message="NLI model X could not be loaded (CUDA out of memory); routing with embedding",
    )
    status = routing_status()
    assert status.source == "worker" and "CUDA out of memory" in str(status)


@pytest.fixture
def admin_client_superuser(client, db):
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_the_admin_shows_the_status_line_on_model_versions_and_teams(admin_client_superuser, settings, tmp_path):
    settings.TRIAGE_ROUTING_SCORER = "auto"
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "missing-nli")
    for url in ("/django-admin/mlops/modelversion/", "/django-admin/triage/team/", "/django-admin/mlops/scorerhealth/"):
        response = admin_client_superuser.get(url)
        assert response.status_code == 200
        assert b"could not be loaded" in response.content and b"routing with ensemble" in response.content


def test_changing_a_team_threshold_in_the_admin_is_audited(admin_client_superuser, teams):
    billing = teams["billing"]
    response = admin_client_superuser.post(
        f"/django-admin/triage/team/{billing.pk}/change/",
        {
            "name": billing.name,
            "slug": billing.slug,
            "description": billing.description,
            "hypothesis": "",
            "mode": Team.Mode.SUGGEST,
            "threshold": "0.83",
            "active": "on",
            "changes-TOTAL_FORMS": "0",
            "changes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    billing.refresh_from_db()
    assert (billing.mode, billing.threshold) == (Team.Mode.SUGGEST, 0.83)
    fields = set(TeamChange.objects.filter(team=billing).values_list("field", flat=True))
    assert fields == {"mode", "threshold"}
