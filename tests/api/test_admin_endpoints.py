from __future__ import annotations

from mlops.models import ModelVersion
from triage.models import Team, TeamChange


def test_an_admin_reads_every_teams_threshold(admin_api, teams):
    body = admin_api.get("/api/thresholds/").json()
    assert {t["slug"]: (t["mode"], t["threshold"]) for t in body["results"]} == {
        slug: ("suggest", 0.9) for slug in teams
    }


def test_an_admin_changes_a_threshold_and_the_change_is_audited(admin_api, admin_ada, teams):
    team = teams["billing"]
    response = admin_api.patch(
        f"/api/thresholds/{team.pk}/", {"threshold": 0.75, "mode": "auto", "reason": "fewer misroutes"}
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["threshold"], response.json()["mode"]) == (0.75, "auto")
    team.refresh_from_db()
    assert (team.threshold, team.mode) == (0.75, "auto")
    changes = {c.field: c for c in TeamChange.objects.filter(team=team)}
    assert set(changes) == {"threshold", "mode"}
    assert changes["threshold"].user == admin_ada and changes["threshold"].reason == "fewer misroutes"


def test_an_unknown_mode_is_refused(admin_api, teams):
    response = admin_api.patch(f"/api/thresholds/{teams['billing'].pk}/", {"mode": "always"})
    assert response.status_code == 400 and "mode" in response.json()
    assert Team.objects.get(slug="billing").mode == "suggest"


def test_thresholds_cannot_be_replaced_wholesale(admin_api, teams):
    assert admin_api.put(f"/api/thresholds/{teams['billing'].pk}/", {"threshold": 0.5}).status_code == 405


def test_an_admin_reads_model_versions(admin_api, champion):
    candidate = ModelVersion.objects.create(
        scorer="setfit", model_ref="artifacts/x", version="sf-2", metrics={"macro_f1": 0.81}
    )
    listed = admin_api.get("/api/model-versions/").json()
    assert [v["version"] for v in listed["results"]] == ["sf-2", "zs-1"]
    detail = admin_api.get(f"/api/model-versions/{candidate.pk}/").json()
    assert (detail["status"], detail["metrics"]) == ("candidate", {"macro_f1": 0.81})
