from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from api.models import ApiToken, hash_token
from tests.api.conftest import caller_for


def test_it_stores_only_the_hash_of_a_token(agent_alice):
    token, secret = ApiToken.issue(agent_alice, name="cli", scope=ApiToken.Scope.AGENT)
    token.refresh_from_db()
    assert token.digest == hash_token(secret)
    assert secret not in {token.digest, token.prefix, token.name}
    assert secret.startswith(token.prefix)


@pytest.mark.parametrize("keyword", ["Bearer", "Token", "bearer"])
def test_it_accepts_bearer_and_token_keywords(agent_alice, teams, keyword):
    _token, secret = ApiToken.issue(agent_alice, name="cli", scope=ApiToken.Scope.AGENT)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {secret}")
    assert client.get("/api/teams/").status_code == 200


def test_it_records_when_a_token_was_last_used(agent_api, teams):
    assert agent_api.token.last_used_at is None
    agent_api.get("/api/teams/")
    agent_api.token.refresh_from_db()
    assert agent_api.token.last_used_at is not None


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer trg_not-a-real-token", "Token \u00e9t\u00e9"])
def test_it_refuses_malformed_or_unknown_tokens_with_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.encode("utf-8").decode("latin-1"))
    response = client.get("/api/teams/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_revoked_token(agent_api, teams):
    agent_api.token.revoke()
    assert agent_api.get("/api/teams/").status_code == 401


def test_it_refuses_the_token_of_a_deactivated_user(agent_api, agent_alice, teams):
    agent_alice.is_active = False
    agent_alice.save()
    assert agent_api.get("/api/teams/").status_code == 401


def test_it_asks_anonymous_callers_to_authenticate(anonymous, teams):
    response = anonymous.get("/api/teams/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_the_command_prints_a_working_token_once(admin_ada, teams):
    out, err = StringIO(), StringIO()
    call_command("create_api_token", "ada", "--scope", "admin", "--name", "ops", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    token = ApiToken.objects.get(digest=hash_token(secret))
    assert (token.user, token.scope, token.name) == (admin_ada, "admin", "ops")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/thresholds/").status_code == 200


def test_the_command_refuses_an_unknown_user_and_a_duplicate_name(admin_ada):
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "nobody", "--scope", "agent", "--name", "x", stdout=StringIO())
    caller_for(admin_ada, ApiToken.Scope.AGENT, name="dup")
    with pytest.raises(CommandError, match="already has"):
        call_command(
            "create_api_token", "ada", "--scope", "agent", "--name", "dup", stdout=StringIO(), stderr=StringIO()
        )


def test_the_admin_issues_a_token_and_shows_its_secret_once(client, admin_ada, agent_alice):
    admin_ada.is_staff = True
    admin_ada.is_superuser = True
    admin_ada.save()
    client.force_login(admin_ada)
    response = client.post(
        "/django-admin/api/apitoken/add/",
        {"user": agent_alice.pk, "name": "helpdesk bot", "scope": "agent"},
        follow=True,
    )
    assert response.status_code == 200
    token = ApiToken.objects.get(name="helpdesk bot")
    shown = [str(m) for m in response.context["messages"]]
    assert any(token.prefix in m and "cannot be shown again" in m for m in shown)
