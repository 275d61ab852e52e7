"""Threshold and mode changes: validated, atomic, audited (who, when, before -> after)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from triage.models import Team, TeamChange
from triage.team_services import set_routing_for_teams, set_team_routing


@pytest.mark.django_db
def test_a_threshold_change_writes_one_audit_row_with_before_and_after(teams, admin_ada):
    billing = teams["billing"]
    changes = set_team_routing(billing, threshold=0.75, user=admin_ada, reason="fewer tickets in triage")
    assert [(c.field, c.before, c.after, c.user, c.reason) for c in changes] == [
        ("threshold", "0.9", "0.75", admin_ada, "fewer tickets in triage")
    ]
    assert Team.objects.get(pk=billing.pk).threshold == 0.75
    assert billing.threshold == 0.75  # the caller's instance is refreshed too
    row = TeamChange.objects.get()
    assert row.team == billing and row.created_at is not None


@pytest.mark.django_db
def test_mode_and_threshold_together_write_two_rows(teams, admin_ada):
    set_team_routing(teams["orders"], mode="suggest", threshold=0.5, user=admin_ada)
    assert sorted(TeamChange.objects.values_list("field", "before", "after")) == [
        ("mode", "auto", "suggest"),
        ("threshold", "0.9", "0.5"),
    ]


@pytest.mark.django_db
def test_setting_the_current_value_is_no_change_and_writes_nothing(teams, admin_ada):
    assert set_team_routing(teams["orders"], mode="auto", threshold=0.9, user=admin_ada) == []
    assert not TeamChange.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), "high", True])
def test_thresholds_outside_zero_and_one_are_refused_and_nothing_is_saved(teams, admin_ada, bad):
    with pytest.raises(ValidationError) as error:
        set_team_routing(teams["billing"], mode="suggest", threshold=bad, user=admin_ada)
    assert "threshold" in error.value.message_dict
    billing = Team.objects.get(slug="billing")
    assert (billing.mode, billing.threshold) == ("auto", 0.9)  # the valid mode was not saved either
    assert not TeamChange.objects.exists()


@pytest.mark.django_db
def test_an_unknown_mode_is_refused(teams, admin_ada):
    with pytest.raises(ValidationError, match="mode"):
        set_team_routing(teams["billing"], mode="yolo", user=admin_ada)


@pytest.mark.django_db
def test_an_agent_cannot_change_routing_even_through_the_service(teams, agent_alice):
    with pytest.raises(PermissionDenied):
        set_team_routing(teams["billing"], threshold=0.5, user=agent_alice)
    assert Team.objects.get(slug="billing").threshold == 0.9


@pytest.mark.django_db
def test_several_teams_are_saved_all_or_none(teams, admin_ada):
    with pytest.raises(ValidationError) as error:
        set_routing_for_teams(
            {teams["billing"]: {"threshold": 0.7}, teams["orders"]: {"threshold": 1.7}}, user=admin_ada
        )
    assert "orders" in error.value.message_dict
    assert Team.objects.get(slug="billing").threshold == 0.9
    set_routing_for_teams({teams["billing"]: {"threshold": 0.7}, teams["orders"]: {"threshold": 0.8}}, user=admin_ada)
    assert dict(Team.objects.filter(slug__in=["billing", "orders"]).values_list("slug", "threshold")) == {
        "billing": 0.7,
        "orders": 0.8,
    }
    assert TeamChange.objects.count() == 2


@pytest.mark.django_db
def test_an_admin_saving_on_the_page_is_in_the_audit_log(admin_client_ada, admin_ada, teams):
    response = admin_client_ada.post(
        reverse("learning:save_team_routing", kwargs={"slug": "billing"}),
        {"mode": "suggest", "threshold": "0.82", "reason": "too many wrong routes", "n": "500"},
    )
    assert response.status_code == 302
    assert "team=billing" in response["Location"]
    rows = TeamChange.objects.filter(team=teams["billing"]).order_by("field")
    assert [(r.field, r.before, r.after, r.user, r.reason) for r in rows] == [
        ("mode", "auto", "suggest", admin_ada, "too many wrong routes"),
        ("threshold", "0.9", "0.82", admin_ada, "too many wrong routes"),
    ]
    page = admin_client_ada.get(response["Location"]).content.decode()
    assert "threshold 0.9 → 0.82" in page  # the confirmation
    log = page.split('data-testid="audit-log"')[1].split("</table>")[0]
    assert "ada" in log and "0.82" in log and "too many wrong routes" in log


@pytest.mark.django_db
def test_applying_suggested_thresholds_saves_the_ticked_teams(admin_client_ada, teams):
    response = admin_client_ada.post(
        reverse("learning:apply_thresholds"),
        {
            "apply": ["billing", "orders"],
            "threshold_billing": "0.6",
            "threshold_orders": "0.7",
            "threshold_account": "0.1",
        },
    )
    assert response.status_code == 302
    thresholds = dict(Team.objects.values_list("slug", "threshold"))
    assert (thresholds["billing"], thresholds["orders"], thresholds["account"]) == (0.6, 0.7, 0.9)
    assert TeamChange.objects.count() == 2
