from __future__ import annotations

import pytest

from tests.dashboard.builders import make_model_version, make_teams


@pytest.fixture
def teams(db):
    return make_teams()


@pytest.fixture
def model_version(db):
    return make_model_version()
