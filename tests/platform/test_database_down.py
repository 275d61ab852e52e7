"""A Postgres restart or outage, seen by a real gunicorn with persistent connections (issue #15, defect 4).

Before: reused connections failed with "server closed the connection" (500) after a restart; a stopped
database answered 500 too. Now: connections are health-checked before reuse (the next request
reconnects), and while the database is unreachable every path answers 503 with Retry-After, JSON under
/api/ and a short page elsewhere.
"""

from __future__ import annotations

import pytest

from api.models import ApiToken
from tests.faults import embedded_servers, http, postgres_down, restart_postgres, web_server
from triage.models import Team

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(not embedded_servers(), reason="restarts the embedded Postgres"),
]


@pytest.fixture
def token(agent_alice) -> dict[str, str]:
    Team.objects.create(slug="billing", name="Billing")
    _, secret = ApiToken.issue(agent_alice, name="gateway", scope=ApiToken.Scope.AGENT)
    return {"Authorization": f"Bearer {secret}"}


def test_after_a_postgres_restart_reused_connections_reconnect_instead_of_failing(token):
    with web_server(workers=1) as web:
        # Several requests, so the one worker holds a persistent connection to reuse.
        for _ in range(3):
            assert http("GET", web.url + "/api/teams/", headers=token).status == 200
        restart_postgres("immediate")
        replies = [http("GET", web.url + "/api/teams/", headers=token) for _ in range(3)]
        assert [r.status for r in replies] == [200, 200, 200], web.log()[-3000:]
        assert replies[0].json()["results"][0]["slug"] == "billing"


def test_while_postgres_is_down_the_api_and_the_pages_answer_503_with_retry_after(token, agent_client):
    session = {"Cookie": f"sessionid={agent_client.cookies['sessionid'].value}"}
    with web_server(workers=1) as web:
        assert http("GET", web.url + "/api/teams/", headers=token).status == 200
        assert http("GET", web.url + "/", headers=session).status == 200
        with postgres_down():
            api = http("GET", web.url + "/api/teams/", headers=token)
            created = http("POST", web.url + "/api/tickets/", data={"body": "Card declined"}, headers=token)
            page = http("GET", web.url + "/", headers=session)
        after = http("GET", web.url + "/api/teams/", headers=token)
    assert (api.status, api.headers["Content-Type"], api.headers["Retry-After"]) == (503, "application/json", "15")
    assert api.json()["code"] == "service_unavailable" and "database" in api.json()["detail"]
    assert created.status == 503 and created.json()["code"] == "service_unavailable"
    assert page.status == 503 and page.headers["Retry-After"] == "15"
    assert page.headers["Content-Type"].startswith("text/html") and b"Back in a moment" in page.body
    assert after.status == 200
