"""Bad input is a 400 with a message per field, and nothing is stored."""

from __future__ import annotations

import pytest

from api.models import IdempotencyKey
from triage.models import BODY_MAX, SUBJECT_MAX, Correction, Team, Ticket


@pytest.fixture(autouse=True)
def nothing_stored(db):
    yield
    assert not Ticket.objects.exists()
    assert not Correction.objects.exists()
    assert not IdempotencyKey.objects.exists()


def post(caller, data):
    return caller.post("/api/tickets/", data, HTTP_IDEMPOTENCY_KEY="validation")


@pytest.mark.parametrize("raw", ['{"body": "unterminated', "[1, 2", "not json", '{"body": NaN}'])
def test_malformed_json_is_a_400(integration_api, raw):
    response = post(integration_api, raw)
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_a_json_array_instead_of_an_object_is_a_400(integration_api):
    response = post(integration_api, "[]")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_another_content_type_is_a_415(integration_api):
    response = integration_api.client.post("/api/tickets/", "body=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_a_missing_body_is_named(integration_api):
    response = post(integration_api, {"subject": "Hello"})
    assert response.status_code == 400
    assert response.json() == {"body": ["This field is required."]}


@pytest.mark.parametrize("blank", ["", "   \n "])
def test_a_blank_body_is_named(integration_api, blank):
    response = post(integration_api, {"body": blank})
    assert response.status_code == 400
    assert list(response.json()) == ["body"]


def test_oversize_fields_are_named_with_their_limit(integration_api):
    response = post(integration_api, {"subject": "s" * (SUBJECT_MAX + 1), "body": "b" * (BODY_MAX + 1)})
    assert response.status_code == 400
    errors = response.json()
    assert str(SUBJECT_MAX) in errors["subject"][0]
    assert str(BODY_MAX) in errors["body"][0]


@pytest.mark.parametrize(
    "field,value",
    [
        ("body", 12),
        ("body", ["a"]),
        ("body", {"text": "a"}),
        ("subject", True),
        ("requester", 5),
        ("external_id", 99),
        ("channel", 3),
        ("team", 1.5),
        ("team", ["billing"]),
    ],
)
def test_wrong_types_are_named(integration_api, teams, field, value):
    data = {"body": "Please refund order 1234.", field: value}
    response = post(integration_api, data)
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("team", ["nope", 999999, "999999", 2**80])
def test_an_unknown_team_is_named(integration_api, teams, team):
    response = post(integration_api, {"body": "Invoice wrong", "team": team})
    assert response.status_code == 400
    assert response.json() == {"team": [f"Unknown team {team!r}."]}


def test_service_rules_come_back_as_field_messages(integration_api):
    response = post(integration_api, {"body": "ok", "requester": "not an address", "subject": "bell \x07"})
    assert response.status_code == 400
    assert response.json() == {
        "requester": ["is not a valid e-mail address"],
        "subject": ["contains binary control characters"],
    }


def test_a_nul_character_is_refused(integration_api):
    response = post(integration_api, {"body": "a\x00b"})
    assert response.status_code == 400
    assert "body" in response.json()


def test_an_unknown_channel_is_named(integration_api):
    response = post(integration_api, {"body": "x", "channel": "pigeon"})
    assert response.status_code == 400
    assert "channel" in response.json()


def test_several_bad_fields_are_all_reported_at_once(integration_api):
    response = post(integration_api, {"subject": 1, "requester": [], "channel": "fax"})
    assert response.status_code == 400
    assert set(response.json()) == {"subject", "body", "requester", "channel"}


def test_a_correction_to_an_unknown_team_changes_nothing(agent_api, ticket, teams):
    response = agent_api.post(f"/api/tickets/{ticket.pk}/correct/", {"team": "nope"})
    assert response.status_code == 400 and "team" in response.json()
    ticket.delete()  # the autouse check wants no tickets; this one was the fixture's


def test_a_threshold_outside_zero_to_one_or_not_a_number_is_refused(admin_api, teams):
    team = teams["billing"]
    for value in (1.5, -0.1, "0.5", True, None):
        response = admin_api.patch(f"/api/thresholds/{team.pk}/", {"threshold": value})
        assert response.status_code == 400, value
        assert "threshold" in response.json()
    assert Team.objects.get(pk=team.pk).threshold == 0.9
    assert not team.changes.exists()
