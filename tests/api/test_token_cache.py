"""Token lookups cached in Redis (api/token_cache.py): one query fewer per request, and every change to a
token, user, group or membership counts from the next request on."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from api import token_cache
from api.authentication import ApiTokenAuthentication
from api.models import ApiToken, hash_token
from triage.roles import AGENTS


def token_queries(caller, path: str = "/api/teams/") -> tuple[int, int]:
    """The response status and how many of its queries read the api_apitoken table."""
    with CaptureQueriesContext(connection) as captured:
        response = caller.get(path)
    return response.status_code, sum('FROM "api_apitoken"' in q["sql"] for q in captured.captured_queries)


def test_a_token_used_once_is_then_read_from_the_cache(agent_api, teams):
    assert token_queries(agent_api) == (200, 1)
    assert token_queries(agent_api) == (200, 0)
    cached, _generation = token_cache.read(hash_token(agent_api.secret))
    token, groups = cached
    assert token.pk == agent_api.token.pk and token.user.username == "alice" and groups == {AGENTS}
    assert "password" not in token.user.__dict__, "the password hash is never cached"


def test_a_token_revoked_after_a_cached_use_is_refused(agent_api, teams):
    agent_api.get("/api/teams/")
    assert token_queries(agent_api) == (200, 0)
    ApiToken.objects.get(pk=agent_api.token.pk).revoke()
    assert agent_api.get("/api/teams/").status_code == 401


def test_the_token_of_a_user_deactivated_after_a_cached_use_is_refused(agent_api, agent_alice, teams):
    agent_api.get("/api/teams/")
    assert token_queries(agent_api) == (200, 0)
    user = User.objects.get(pk=agent_alice.pk)
    user.is_active = False
    user.save()
    assert agent_api.get("/api/teams/").status_code == 401


def test_a_role_lost_after_a_cached_use_is_lost_at_once(agent_api, agent_alice, teams):
    agent_api.get("/api/teams/")
    assert token_queries(agent_api) == (200, 0)
    User.objects.get(pk=agent_alice.pk).groups.remove(Group.objects.get(name=AGENTS))
    assert agent_api.get("/api/teams/").status_code == 403


def test_a_deleted_group_takes_its_role_with_it(agent_api, teams):
    agent_api.get("/api/teams/")
    assert token_queries(agent_api) == (200, 0)
    Group.objects.get(name=AGENTS).delete()
    assert agent_api.get("/api/teams/").status_code == 403


def test_a_lookup_stored_before_a_change_committed_is_not_used(agent_api, teams):
    """A request that read the token before a revocation committed stores it under a generation that the
    revocation's commit makes stale."""
    digest = hash_token(agent_api.secret)
    _cached, generation = token_cache.read(digest)
    token, groups = ApiTokenAuthentication.lookup(digest)
    token_cache.invalidate(sender=ApiToken)  # the revocation, saved and committed meanwhile
    token_cache.store(digest, generation, token, groups)
    assert token_cache.read(digest)[0] is None


def test_with_the_cache_off_every_request_reads_the_token(agent_api, teams, settings):
    settings.API_TOKEN_CACHE_SECONDS = 0
    assert token_queries(agent_api) == (200, 1)
    assert token_queries(agent_api) == (200, 1)
