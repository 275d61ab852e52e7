from __future__ import annotations

import pytest

from tests.tuning.builders import build_history, make_teams


@pytest.fixture
def teams(db):
    return make_teams()


@pytest.fixture
def history(db):
    return build_history()
