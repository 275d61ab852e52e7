"""``ticket.tagged``: queued after commit when a tag admins switched ``notify`` on for becomes set (the
builders' high urgency and security), once per ticket and tag, for subscribed endpoints only; delivered by
the existing machinery."""

from __future__ import annotations

import json

import pytest

from api.models import WebhookDelivery, WebhookEndpoint
from api.webhooks import deliver
from tags.signals import tags_changed
from tests.api.webhook_server import WebhookServer
from tests.tags.builders import make_tag_sets, predict_tags


@pytest.fixture
def tag_sets(db):
    return make_tag_sets()


def _endpoint(url: str = "http://127.0.0.1:9/", events=("ticket.tagged",)) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name="pager", url=url, events=list(events), secret="s3cret")


def _tag(agent_api, ticket, key: str, action: str = "add"):
    response = agent_api.post(f"/api/tickets/{ticket.pk}/tags/", {"tag": key, "action": action})
    assert response.status_code == 201, response.json()


def test_an_agent_setting_a_security_tag_queues_one_event_after_commit(
    agent_api, ticket, tag_sets, django_capture_on_commit_callbacks
):
    endpoint = _endpoint()
    _endpoint(events=("ticket.routed",))  # not subscribed: gets nothing
    with django_capture_on_commit_callbacks(execute=True):
        _tag(agent_api, ticket, "topics/outage")  # not an alerting tag
        assert not WebhookDelivery.objects.exists()
        _tag(agent_api, ticket, "topics/security")
    (delivery,) = WebhookDelivery.objects.all()
    assert (delivery.endpoint, delivery.event) == (endpoint, "ticket.tagged")
    assert delivery.payload["ticket"]["id"] == ticket.pk
    assert delivery.payload["tag"] == {"tag": "topics/security", "name": "security", "probability": None,
                                       "by_agent": True}  # fmt: skip
    # Removed and set again: still once per ticket and tag.
    with django_capture_on_commit_callbacks(execute=True):
        _tag(agent_api, ticket, "topics/security", "remove")
        _tag(agent_api, ticket, "topics/security")
    assert WebhookDelivery.objects.count() == 1


def test_scoring_that_sets_high_urgency_queues_the_event_and_it_is_delivered_signed(
    ticket, tag_sets, django_capture_on_commit_callbacks
):
    with WebhookServer() as receiver:
        _endpoint(receiver.url)
        predict_tags(ticket, {"urgency/high": 0.4, "topics/security": 0.2})
        tags_changed.send_robust(sender=None, ticket_ids=[ticket.pk])
        assert not WebhookDelivery.objects.exists()  # below threshold: not set, no event
        predict_tags(ticket, {"urgency/high": 0.9}, version="v2")
        with django_capture_on_commit_callbacks(execute=False):
            tags_changed.send_robust(sender=None, ticket_ids=[ticket.pk])
        (delivery,) = WebhookDelivery.objects.all()
        assert deliver(delivery.pk).state == WebhookDelivery.State.DELIVERED
        (request,) = receiver.received
        assert request.headers["X-Triage-Event"] == "ticket.tagged"
        assert json.loads(request.body)["data"]["tag"]["tag"] == "urgency/high"


def test_which_tags_fire_is_chosen_by_admins_not_by_slug(
    agent_api, ticket, tag_sets, admin_ada, django_capture_on_commit_callbacks
):
    from tags.models import TagChange
    from tags.services import set_tag_notify
    from tests.tags.builders import tag

    _endpoint()
    set_tag_notify(tag("topics/outage"), True, user=admin_ada, reason="pager on outages")
    set_tag_notify(tag("topics/security"), False, user=admin_ada, reason="too noisy")
    with django_capture_on_commit_callbacks(execute=True):
        _tag(agent_api, ticket, "topics/security")  # switched off: no event, whatever its slug
        _tag(agent_api, ticket, "topics/outage")  # switched on
    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.payload["tag"]["tag"] == "topics/outage"
    changes = TagChange.objects.filter(field="notify").order_by("pk")
    assert [(c.tag.slug, c.before, c.after, c.user, c.reason) for c in changes] == [
        ("outage", "False", "True", admin_ada, "pager on outages"),
        ("security", "True", "False", admin_ada, "too noisy"),
    ]
