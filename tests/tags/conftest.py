from __future__ import annotations

import pytest

from tests.routing.nli_models import build_nli_model


@pytest.fixture(scope="session")
def tiny_nli(tmp_path_factory) -> str:
    """A tiny NLI model (real BERT architecture, random weights, contradiction last), built offline."""
    root = tmp_path_factory.mktemp("tags-nli")
    return str(build_nli_model(root / "bert", "bert", {0: "entailment", 1: "neutral", 2: "contradiction"}))


@pytest.fixture
def superuser_client(client, admin_ada):
    """Ada, an admin, logged in to the Django admin (staff and superuser there)."""
    admin_ada.is_staff = admin_ada.is_superuser = True
    admin_ada.save(update_fields=["is_staff", "is_superuser"])
    client.force_login(admin_ada)
    return client
