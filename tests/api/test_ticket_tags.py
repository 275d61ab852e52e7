"""Tags in the API: ticket list and detail carry them; agents add and remove them (a tag label each)."""

from __future__ import annotations

import pytest

from tags.models import TagLabel
from tags.services import archive_tag, create_tag_set
from tests.tags.builders import make_tag_sets, predict_tags, tag


@pytest.fixture
def tag_sets(db):
    return make_tag_sets()


def test_list_and_detail_carry_tags_with_probability_and_set_flag(agent_api, ticket, tag_sets):
    predict_tags(ticket, {"urgency/high": 0.8, "topics/security": 0.3})
    TagLabel.objects.create(ticket=ticket, tag=tag("topics/outage"), action="add")
    expected = [
        {"tag": "topics/outage", "tag_set": "topics", "name": "outage", "probability": None, "is_set": True,
         "by_agent": True},
        {"tag": "topics/security", "tag_set": "topics", "name": "security", "probability": 0.3, "is_set": False,
         "by_agent": False},
        {"tag": "urgency/high", "tag_set": "urgency", "name": "high", "probability": 0.8, "is_set": True,
         "by_agent": False},
    ]  # fmt: skip
    assert agent_api.get(f"/api/tickets/{ticket.pk}/").json()["tags"] == expected
    (row,) = agent_api.get("/api/tickets/").json()["results"]
    assert row["tags"] == expected


def test_an_agent_adds_and_removes_a_tag_as_a_label(agent_api, agent_alice, ticket, tag_sets):
    (prediction,) = predict_tags(ticket, {"topics/security": 0.3})
    response = agent_api.post(f"/api/tickets/{ticket.pk}/tags/", {"tag": "topics/security", "action": "add"})
    assert response.status_code == 201, response.json()
    (label,) = response.json()
    assert (label["tag"], label["action"], label["prediction"], label["agent"], label["source"]) == (
        "topics/security",
        "add",
        prediction.pk,
        "alice",
        "api",
    )
    assert TagLabel.objects.get().agent == agent_alice
    detail = agent_api.get(f"/api/tickets/{ticket.pk}/").json()
    assert next(t for t in detail["tags"] if t["tag"] == "topics/security")["is_set"] is True
    agent_api.post(f"/api/tickets/{ticket.pk}/tags/", {"tag": "topics/security", "action": "remove"})
    detail = agent_api.get(f"/api/tickets/{ticket.pk}/").json()
    assert next(t for t in detail["tags"] if t["tag"] == "topics/security")["is_set"] is False


def test_adding_a_single_label_tag_removes_the_one_set_before(agent_api, ticket, tag_sets):
    predict_tags(ticket, {"urgency/normal": 0.7, "urgency/high": 0.2})
    response = agent_api.post(f"/api/tickets/{ticket.pk}/tags/", {"tag": "urgency/high", "action": "add"})
    assert [(row["tag"], row["action"]) for row in response.json()] == [
        ("urgency/normal", "remove"),
        ("urgency/high", "add"),
    ]


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"tag": "topics/nope", "action": "add"}, "tag", "Unknown tag"),
        ({"tag": "security", "action": "add"}, "tag", "Unknown tag"),
        ({"tag": "topics/outage", "action": "add"}, "tag", "archived"),
        ({"tag": "topics/security", "action": "maybe"}, "action", "not a valid choice"),
        ({"tag": ["topics/security"], "action": "add"}, "tag", "Not a valid string"),
        ({"action": "add"}, "tag", "required"),
        ({"tag": "quiet/hush", "action": "add"}, "tag", "inactive"),
    ],
)
def test_bad_tag_changes_get_a_clear_json_error_and_store_nothing(
    agent_api, admin_ada, ticket, tag_sets, body, field, message
):
    archive_tag(tag("topics/outage"), user=admin_ada)
    quiet = create_tag_set("Quiet", kind="multi", tags=[{"name": "hush"}])
    quiet.active = False
    quiet.save()
    response = agent_api.post(f"/api/tickets/{ticket.pk}/tags/", body)
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])
    assert not TagLabel.objects.exists()


def test_tag_changes_on_a_missing_ticket_are_404(agent_api, tag_sets):
    response = agent_api.post("/api/tickets/999999/tags/", {"tag": "topics/security", "action": "add"})
    assert response.status_code == 404
