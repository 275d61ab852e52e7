"""The OpenAPI schema, the offline docs page, and a schemathesis run against the schema."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from api.models import ApiToken
from config.wsgi import application
from mlops.models import ModelVersion
from search.models import Article, Suggestion
from tags.services import archive_tag
from tests.api.conftest import decide
from tests.tags.builders import make_tag_sets, predict_tags, tag
from triage.models import Team, Ticket


def test_the_schema_is_served_as_openapi_3_and_names_the_token_scheme(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `Authorization: Bearer <token>` (`Token <token>` works too).",
    }
    paths = set(schema["paths"])
    assert {
        "/api/tickets/",
        "/api/tickets/{id}/",
        "/api/tickets/{id}/accept/",
        "/api/tickets/{id}/correct/",
        "/api/tickets/{id}/tags/",
        "/api/tickets/{id}/article-feedback/",
        "/api/teams/",
        "/api/articles/",
        "/api/articles/{id}/",
        "/api/thresholds/{id}/",
        "/api/model-versions/",
    } <= paths
    create = schema["paths"]["/api/tickets/"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])


def test_every_operation_documents_its_error_statuses_as_json(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"401", "403", "406", "429"} <= codes, (method, path)
            if "{id}" in path:
                assert "404" in codes, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= codes, (method, path)
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert "application/json" in response["content"], (method, path, code)
    page_size = next(p for p in schema["paths"]["/api/tickets/"]["get"]["parameters"] if p["name"] == "page_size")
    assert page_size["schema"] == {"type": "integer", "minimum": 1, "maximum": 200}


@pytest.mark.parametrize(
    "page,asset",
    [("/api/docs/", "swagger-ui-dist/swagger-ui-bundle.js"), ("/api/redoc/", "redoc/bundles/redoc.standalone.js")],
)
def test_the_docs_pages_render_from_local_assets(client, db, page, asset):
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    # Swagger UI's start-up script comes from the page's own URL (?script=): no inline script, and local.
    scripts = [src for src in re.findall(r'src="([^"]+)"', html) if src != f"{page}?script="]
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    assert any(src.endswith(asset) for src in scripts)
    for src in scripts:
        assert finders.find(src.removeprefix("/static/")), f"{src} is not shipped"


def test_the_browsable_api_renders_for_a_logged_in_agent(client, agent_alice):
    client.force_login(agent_alice)
    response = client.get("/api/tickets/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Ticket List" in response.content


# --- schemathesis: every operation, generated valid and invalid input, as an admin --------------

# The schema is read from the app itself, in-process (no server); schemathesis's lazy
# ``from_fixture`` loader does not work with pytest 9, so it is loaded at import, which needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def keep_test_connection():
    """The raw WSGI app closes the database connection after each request, as a server should; in a test
    that would close the test's transaction. Django's own test client switches this off the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(db, admin_ada, keep_test_connection) -> dict:
    """An admin token, and one real object per resource so that detail and action URLs hit rows."""
    team = Team.objects.create(slug="billing", name="Billing")
    version = ModelVersion.objects.create(scorer="nli", model_ref="t", version="1", status="champion")
    ticket = Ticket.objects.create(subject="s", body="b")
    decide(ticket, team, "suggested", version)
    article = Article.objects.create(title="t", body="b")
    Suggestion.objects.create(ticket=ticket, article=article, score=0.5, rank=1)
    make_tag_sets()  # so that fuzzed tag changes can name real tags (and archived or unknown ones)
    archive_tag(tag("topics/outage"))
    predict_tags(ticket, {"urgency/high": 0.7, "topics/security": 0.4})
    return {
        "secret": ApiToken.issue(admin_ada, name="schemathesis", scope="admin")[1],
        "ids": {
            "tickets": ticket.pk,
            "articles": article.pk,
            "teams": team.pk,
            "thresholds": team.pk,
            "model-versions": version.pk,
        },
    }


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_answers_with_a_server_error_or_off_schema(case, seeded):
    generated = str((case.path_parameters or {}).get("id", ""))
    if generated.isdigit() and int(generated) % 2 == 0:
        # Even ids (path parameters arrive as text) become a row that exists: fuzzed bodies then
        # reach the services instead of stopping at a 404.
        case.path_parameters["id"] = str(seeded["ids"][case.path.split("/")[2]])
    # Every check schemathesis has, with the expectations in schemathesis.toml.
    case.call_and_validate(headers={"Authorization": f"Bearer {seeded['secret']}"})


# --- schemathesis's own runner against the live server: every phase (examples, coverage, fuzzing,
# stateful) and every check, the way `st run` is used against a deployment --------------------------


@pytest.mark.django_db(transaction=True)
def test_schemathesis_run_with_every_check_and_phase_finds_nothing_on_the_live_server(live_server, admin_ada):
    team = Team.objects.create(slug="billing", name="Billing")
    version = ModelVersion.objects.create(scorer="nli", model_ref="t", version="1", status="champion")
    ticket = Ticket.objects.create(subject="s", body="b")
    decide(ticket, team, "suggested", version)
    Suggestion.objects.create(ticket=ticket, article=Article.objects.create(title="t", body="b"), score=0.5, rank=1)
    make_tag_sets()
    secret = ApiToken.issue(admin_ada, name="schemathesis", scope="admin")[1]
    # Run from the repository root so that schemathesis.toml is read.
    command = [str(Path(sys.executable).parent / "st"), "run", f"{live_server.url}/api/schema/"]
    command += ["--header", f"Authorization: Bearer {secret}", "--checks", "all", "--workers", "1"]
    command += ["--max-examples", "10", "--seed", "1", "--no-color"]
    result = subprocess.run(command, cwd=django_settings.BASE_DIR, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "failures" not in result.stdout.splitlines()[-1], result.stdout[-3000:]
