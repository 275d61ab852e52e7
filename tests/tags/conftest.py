from __future__ import annotations

import pytest

from tests.routing.nli_models import build_nli_model


@pytest.fixture(scope="session")
def tiny_nli(tmp_path_factory) -> str:
    """A tiny NLI model (real BERT architecture, random weights, contradiction last), built offline."""
    root = tmp_path_factory.mktemp("tags-nli")
    return str(build_nli_model(root / "bert", "bert", {0: "entailment", 1: "neutral", 2: "contradiction"}))
