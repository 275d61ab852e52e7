"""The Django admin for tag sets keeps the same rules as the services, and answers bad input with a form error."""

from __future__ import annotations

import pytest

from tags.models import Tag, TagSet
from tags.services import create_tag_set, record_tag_label
from triage.models import Ticket

pytestmark = pytest.mark.django_db


def _post(names: list[str], *, kind: str = "multi", extra: dict | None = None, initial: int = 0) -> dict:
    data = {
        "name": "Topics",
        "slug": "topics",
        "description": "",
        "kind": kind,
        "method": "zero_shot",
        "active": "on",
        "tags-TOTAL_FORMS": str(len(names)),
        "tags-INITIAL_FORMS": str(initial),
        "tags-MIN_NUM_FORMS": "0",
        "tags-MAX_NUM_FORMS": "1000",
        "changes-TOTAL_FORMS": "0",
        "changes-INITIAL_FORMS": "0",
    }
    for i, name in enumerate(names):
        data.update({f"tags-{i}-name": name, f"tags-{i}-slug": name.lower().replace(" ", "-")})
    data.update(extra or {})
    return data


def test_an_admin_creates_a_tag_set_with_its_tags(superuser_client):
    response = superuser_client.post("/django-admin/tags/tagset/add/", _post(["security", "outage"]))
    assert response.status_code == 302
    assert sorted(Tag.objects.values_list("slug", flat=True)) == ["outage", "security"]


@pytest.mark.parametrize(
    ("names", "kind", "message"),
    [
        ([], "multi", "needs at least 1 current tags"),
        (["high"], "single", "needs at least 2 current tags"),
        (["Outage", "outage x"], "multi", None),
    ],
)
def test_an_empty_or_too_small_tag_set_is_refused_with_nothing_stored(superuser_client, names, kind, message):
    response = superuser_client.post("/django-admin/tags/tagset/add/", _post(names, kind=kind))
    if message is None:  # a valid pair of distinct names, as a control
        assert response.status_code == 302
        return
    assert response.status_code == 200 and message in response.content.decode()
    assert not TagSet.objects.exists()


def test_duplicate_tag_names_are_a_form_error_not_a_crash(superuser_client):
    data = _post(["Outage", "outage"], extra={"tags-1-slug": "outage-2"})
    response = superuser_client.post("/django-admin/tags/tagset/add/", data)
    assert response.status_code == 200
    assert "each must be unique in its set" in response.content.decode()
    assert not TagSet.objects.exists()


def test_switching_kind_with_labels_recorded_is_a_form_error(superuser_client):
    urgency = create_tag_set("Topics", kind="single", tags=[{"name": "low"}, {"name": "high"}])
    ticket = Ticket.objects.create(subject="s", body="b")
    record_tag_label(ticket, urgency.tags.get(slug="high"), "add")
    tags = list(urgency.tags.order_by("pk"))
    data = _post([t.name for t in tags], kind="multi", initial=len(tags))
    for i, t in enumerate(tags):
        data[f"tags-{i}-id"] = str(t.pk)
        data[f"tags-{i}-tag_set"] = str(urgency.pk)
    response = superuser_client.post(f"/django-admin/tags/tagset/{urgency.pk}/change/", data)
    assert response.status_code == 200
    assert "switching would change what they mean" in response.content.decode()
    assert TagSet.objects.get(pk=urgency.pk).kind == "single"


def test_a_tag_with_labels_is_not_deleted_in_the_admin_but_can_be_archived(superuser_client):
    topics = create_tag_set("Topics", tags=[{"name": "security"}, {"name": "legal"}])
    legal = topics.tags.get(slug="legal")
    record_tag_label(Ticket.objects.create(subject="s", body="b"), legal, "add")
    response = superuser_client.post(f"/django-admin/tags/tag/{legal.pk}/delete/", {"post": "yes"})
    # Django's delete page names the protected labels instead of deleting; the archive action is the way.
    assert response.status_code == 200 and "protected related objects" in response.content.decode()
    assert Tag.objects.filter(pk=legal.pk, archived_at=None).exists()
    superuser_client.post("/django-admin/tags/tag/", {"action": "archive_tags", "_selected_action": [str(legal.pk)]})
    assert Tag.objects.get(pk=legal.pk).archived
