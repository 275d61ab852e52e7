from __future__ import annotations

import uuid

from rest_framework.test import APIClient

from tests.api.conftest import HIGH_RATES, caller_for


def limit(settings, **rates):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**HIGH_RATES, **rates}}


def test_each_token_has_its_own_budget(settings, agent_alice, teams):
    limit(settings, api_agent="3/min")
    first, second = caller_for(agent_alice, "agent", "one"), caller_for(agent_alice, "agent", "two")
    codes = [first.get("/api/teams/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert second.get("/api/teams/").status_code == 200


def test_a_throttled_answer_says_when_to_come_back(settings, integrator_ivan):
    limit(settings, api_integration="1/hour")
    caller = caller_for(integrator_ivan, "integration")
    assert caller.post("/api/tickets/", {"body": "one"}).status_code == 201
    response = caller.post("/api/tickets/", {"body": "two"})
    assert response.status_code == 429
    assert 3500 <= int(response["Retry-After"]) <= 3600


def test_the_rate_follows_the_token_scope(settings, admin_ada, teams):
    limit(settings, api_agent="1/min", api_admin="5/min")
    agent_scoped, admin_scoped = caller_for(admin_ada, "agent", "a"), caller_for(admin_ada, "admin", "b")
    assert [agent_scoped.get("/api/teams/").status_code for _ in range(2)] == [200, 429]
    assert [admin_scoped.get("/api/teams/").status_code for _ in range(2)] == [200, 200]


def test_anonymous_requests_are_limited_by_address(settings, db):
    limit(settings, api_anon="2/min")
    client = APIClient(REMOTE_ADDR=f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}")
    codes = [client.get("/api/schema/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_requests_are_served_unthrottled_when_the_counter_store_is_down(settings, agent_api, teams, monkeypatch):
    from django.core.cache.backends.redis import RedisCache

    limit(settings, api_agent="1/min")
    unreachable = RedisCache("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.2}})
    monkeypatch.setattr("api.throttling.throttle_cache", lambda: unreachable)
    assert [agent_api.get("/api/teams/").status_code for _ in range(2)] == [200, 200]
