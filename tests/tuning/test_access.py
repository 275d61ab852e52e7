"""Tuning and report pages are for admins: agents and users without a role get 403 everywhere."""

from __future__ import annotations

import pytest
from django.urls import reverse

from triage.models import Team, TeamChange

GETS = [
    ("learning:tuning", {}, {}),
    ("learning:what_if", {}, {"team": "billing", "threshold": "0.5", "format": "json"}),
    ("learning:what_if", {}, {"team": "billing", "threshold": "0.5"}),
    ("learning:suggest_thresholds", {}, {"target": "0.9", "format": "json"}),
    ("learning:reports", {}, {}),
    ("learning:reports", {}, {"format": "json"}),
]
POSTS = [
    ("learning:save_team_routing", {"slug": "billing"}, {"mode": "auto", "threshold": "0.1"}),
    ("learning:apply_thresholds", {}, {"apply": "billing", "threshold_billing": "0.1"}),
]


@pytest.fixture
def user_client(request, client, agent_alice, outsider_olga):
    client.force_login({"agent": agent_alice, "outsider": outsider_olga}[request.param])
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("user_client", ["agent", "outsider"], indirect=True)
@pytest.mark.parametrize(("name", "kwargs", "params"), GETS)
def test_non_admins_get_403_on_every_tuning_page_and_endpoint(user_client, teams, name, kwargs, params):
    assert user_client.get(reverse(name, kwargs=kwargs), params).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("user_client", ["agent", "outsider"], indirect=True)
@pytest.mark.parametrize(("name", "kwargs", "data"), POSTS)
def test_non_admins_get_403_on_every_tuning_write_and_nothing_changes(user_client, teams, name, kwargs, data):
    assert user_client.post(reverse(name, kwargs=kwargs), data).status_code == 403
    billing = Team.objects.get(slug="billing")
    assert (billing.mode, billing.threshold) == ("auto", 0.9)
    assert not TeamChange.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "kwargs", "params"), GETS)
def test_anonymous_visitors_are_sent_to_log_in(client, teams, name, kwargs, params):
    response = client.get(reverse(name, kwargs=kwargs), params)
    assert response.status_code == 302 and reverse("login") in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "kwargs", "params"), GETS)
def test_admins_see_every_tuning_page_and_endpoint(admin_client_ada, teams, name, kwargs, params):
    assert admin_client_ada.get(reverse(name, kwargs=kwargs), params).status_code == 200
