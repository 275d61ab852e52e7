from __future__ import annotations

import pytest

from tests.routing.nli_models import build_nli_model

ORDER_LOWER_ENTAILMENT_FIRST = {0: "entailment", 1: "neutral", 2: "contradiction"}
ORDER_UPPER_ENTAILMENT_LAST = {0: "CONTRADICTION", 1: "Neutral", 2: "ENTAILMENT"}

TEAMS = [
    ("billing", "Billing", "Invoices, refunds, payments and charges on a card or an account."),
    ("sign-in", "Sign-in", "Passwords, two-factor codes, locked accounts and trouble logging in."),
    ("delivery", "Delivery", "Parcels and orders that are late, lost or delivered to the wrong address."),
]


@pytest.fixture(scope="session")
def nli_models(tmp_path_factory) -> dict[str, str]:
    """Tiny NLI models (real architectures, random weights) with different label orders, built offline."""
    root = tmp_path_factory.mktemp("nli")
    return {
        "bert": str(build_nli_model(root / "bert", "bert", ORDER_LOWER_ENTAILMENT_FIRST)),
        "deberta": str(build_nli_model(root / "deberta", "deberta-v2", ORDER_UPPER_ENTAILMENT_LAST)),
        "short": str(build_nli_model(root / "short", "bert", ORDER_LOWER_ENTAILMENT_FIRST, model_max_length=32)),
        "no-entailment": str(build_nli_model(root / "plain", "bert", {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})),
    }


@pytest.fixture
def embedding_routing(settings):
    """Route with the packaged bi-encoder (fast, offline, real)."""
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    return settings


@pytest.fixture
def teams(db):
    from triage.models import Team

    return {
        slug: Team.objects.create(slug=slug, name=name, description=description, mode=Team.Mode.AUTO, threshold=0.5)
        for slug, name, description in TEAMS
    }
