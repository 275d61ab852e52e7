from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from api.models import ApiToken
from mlops.models import ModelVersion
from triage.models import Prediction, Team, Ticket
from triage.roles import INTEGRATIONS

HIGH_RATES = {
    "api_agent": "100000/min",
    "api_admin": "100000/min",
    "api_integration": "100000/min",
    "api_session": "100000/min",
    "api_anon": "100000/min",
}


@pytest.fixture(autouse=True)
def generous_throttle_rates(settings):
    """Counts live in the shared Redis; only the throttling tests ask for real limits."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": HIGH_RATES}


@dataclass
class Caller:
    """A test client that sends one token on every request."""

    client: APIClient
    token: ApiToken | None
    secret: str | None

    def __getattr__(self, method):
        send = getattr(self.client, method)

        def call(path, data=None, **extra):
            if data is not None and method in ("post", "put", "patch") and not isinstance(data, str | bytes):
                data = json.dumps(data)
            if data is not None and method in ("post", "put", "patch"):
                extra.setdefault("content_type", "application/json")
            return send(path, data, **extra)

        return call


def caller_for(user: User, scope: str, name: str = "test") -> Caller:
    token, secret = ApiToken.issue(user, name=name, scope=scope)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return Caller(client, token, secret)


@pytest.fixture
def integrator_ivan(db) -> User:
    """A service account in the integrations group (an e-mail gateway, say)."""
    user = User.objects.create_user(username="ivan", password="pw-ivan")
    user.groups.add(Group.objects.get_or_create(name=INTEGRATIONS)[0])
    return user


@pytest.fixture
def anonymous() -> Caller:
    return Caller(APIClient(), None, None)


@pytest.fixture
def agent_api(agent_alice) -> Caller:
    return caller_for(agent_alice, ApiToken.Scope.AGENT)


@pytest.fixture
def admin_api(admin_ada) -> Caller:
    return caller_for(admin_ada, ApiToken.Scope.ADMIN)


@pytest.fixture
def integration_api(integrator_ivan) -> Caller:
    return caller_for(integrator_ivan, ApiToken.Scope.INTEGRATION)


@pytest.fixture
def outsider_api(outsider_olga) -> Caller:
    """A token with the admin scope, of a user who holds no role: it grants nothing."""
    return caller_for(outsider_olga, ApiToken.Scope.ADMIN)


@pytest.fixture
def teams(db) -> dict[str, Team]:
    specs = [("billing", "Billing"), ("shipping", "Shipping"), ("accounts", "Accounts")]
    return {slug: Team.objects.create(slug=slug, name=name) for slug, name in specs}


@pytest.fixture
def champion(db) -> ModelVersion:
    return ModelVersion.objects.create(
        scorer="nli", model_ref="test", version="zs-1", status=ModelVersion.Status.CHAMPION
    )


def decide(ticket: Ticket, team: Team | None, decision: str, version: ModelVersion, confidence: float = 0.8):
    """Store a routing decision the way the router would (the router itself is another app's)."""
    scores = {team.slug: confidence} if team is not None else {}
    return Prediction.objects.create(
        ticket=ticket,
        model_version=version,
        scorer=version.scorer,
        scores=scores,
        raw_scores=scores,
        chosen_team=team,
        confidence=confidence,
        threshold=0.9,
        decision=decision,
    )


@pytest.fixture
def ticket(db) -> Ticket:
    return Ticket.objects.create(subject="Card declined", body="My card is declined at checkout.")
