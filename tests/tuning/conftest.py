from __future__ import annotations

import pytest

from tests.tuning.builders import build_history, make_teams


@pytest.fixture
def teams(db):
    return make_teams()


@pytest.fixture
def history(db):
    return build_history()


@pytest.fixture
def ada_client(client, admin_ada):
    client.force_login(admin_ada)
    return client


@pytest.fixture
def agent_client(client, agent_alice):
    client.force_login(agent_alice)
    return client
