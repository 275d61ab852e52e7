from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from triage.roles import ADMINS, AGENTS

# One Playwright instance for the whole session: a second sync_playwright() started while the first is
# alive fails ("Sync API inside the asyncio loop"), so every directory shares these fixtures.
pytest_plugins = ["tests.browser.fixtures"]


def _user(username: str, group: str | None) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, email=f"{username}@example.com")
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


@pytest.fixture
def agent_alice(db) -> User:
    """An agent: works tickets, no tuning or model pages."""
    return _user("alice", AGENTS)


@pytest.fixture
def admin_ada(db) -> User:
    """An admin: everything an agent does, plus tuning, models and retraining."""
    return _user("ada", ADMINS)


@pytest.fixture
def outsider_olga(db) -> User:
    """A logged-in user with no role."""
    return _user("olga", None)


@pytest.fixture
def worker(transactional_db):
    """A real Celery worker process on all queues, against the test database."""
    from tests.workers import celery_worker, purge_queues

    purge_queues()
    with celery_worker() as w:
        yield w


@pytest.fixture
def agent_client(client, agent_alice):
    """The test client logged in as Alice, an agent."""
    client.force_login(agent_alice)
    return client


@pytest.fixture
def admin_client_ada(client, admin_ada):
    """The test client logged in as Ada, an admin."""
    client.force_login(admin_ada)
    return client
