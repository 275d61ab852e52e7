from __future__ import annotations

import pytest

# The search tests' small help centre, indexed with the packaged embedder (fixtures shared, not copied).
from tests.search.conftest import cross_encoder, embedder, kb, teams  # noqa: F401


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path):
    """Each test saves its diagnostics report in its own directory."""
    settings.TRIAGE_ARTIFACTS_DIR = tmp_path
    return tmp_path
