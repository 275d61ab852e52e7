from __future__ import annotations

import pytest

from tests.dashboard.builders import make_model_version, make_teams


@pytest.fixture
def teams(db):
    return make_teams()


@pytest.fixture
def model_version(db):
    return make_model_version()


@pytest.fixture
def agent_client(client, agent_alice):
    client.force_login(agent_alice)
    return client


@pytest.fixture
def admin_client_ada(client, admin_ada):
    client.force_login(admin_ada)
    return client
