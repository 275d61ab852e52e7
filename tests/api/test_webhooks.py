from __future__ import annotations

import json
import socket
import time

import pytest

from api.models import WebhookDelivery, WebhookEndpoint
from api.tasks import deliver_webhook_task
from api.webhooks import deliver, queue_ticket_event, sign, verify_signature
from tests.api.conftest import decide
from tests.api.webhook_server import WebhookServer
from tests.workers import celery_worker, purge_queues, wait_for
from triage.models import Prediction, Team, Ticket
from triage.signals import ticket_decided

EVENTS = ["ticket.routed", "ticket.needs_triage"]


@pytest.fixture
def receiver():
    with WebhookServer() as receiver:
        yield receiver


@pytest.fixture
def routed(ticket, teams, champion):
    ticket.team, ticket.status = teams["billing"], Ticket.Status.ROUTED
    ticket.save()
    return ticket, decide(ticket, teams["billing"], Prediction.Decision.AUTO_ROUTED, champion, confidence=0.95)


def endpoint_for(url, events=EVENTS, **kwargs) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name="crm", url=url, events=events, secret="s3cret", **kwargs)


def free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/closed"


def test_a_signature_verifies_and_a_tampered_or_stale_one_does_not():
    now = str(int(time.time()))
    signature = sign("s3cret", now, b'{"a":1}')
    assert verify_signature("s3cret", now, b'{"a":1}', signature)
    assert not verify_signature("s3cret", now, b'{"a":2}', signature)
    assert not verify_signature("other", now, b'{"a":1}', signature)
    old = str(int(time.time()) - 3600)
    assert not verify_signature("s3cret", old, b'{"a":1}', sign("s3cret", old, b'{"a":1}'))


@pytest.mark.parametrize(
    "decision,event",
    [("auto_routed", "ticket.routed"), ("suggested", "ticket.needs_triage"), ("abstained", "ticket.needs_triage")],
)
def test_each_decision_queues_its_event_for_subscribed_endpoints_only(ticket, teams, champion, decision, event):
    wants = endpoint_for("http://127.0.0.1:9/a", events=[event])
    endpoint_for("http://127.0.0.1:9/b", events=[e for e in EVENTS if e != event])
    endpoint_for("http://127.0.0.1:9/c", events=EVENTS, active=False)
    prediction = decide(ticket, teams["billing"], decision, champion)
    deliveries = queue_ticket_event(ticket, prediction)
    assert [(d.endpoint, d.event) for d in deliveries] == [(wants, event)]
    assert deliveries[0].payload["prediction"]["decision"] == decision
    assert deliveries[0].payload["ticket"]["id"] == ticket.pk


def test_a_delivery_is_signed_over_timestamp_and_raw_body(receiver, routed):
    ticket, prediction = routed
    endpoint = endpoint_for(receiver.url)
    (delivery,) = queue_ticket_event(ticket, prediction)
    deliver(delivery.pk)
    (request,) = receiver.received
    headers = request.headers
    assert headers["X-Triage-Event"] == "ticket.routed"
    assert headers["X-Triage-Delivery"] == str(delivery.pk)
    assert verify_signature(endpoint.secret, headers["X-Triage-Timestamp"], request.body, headers["X-Triage-Signature"])
    body = json.loads(request.body)
    assert body["event"] == "ticket.routed"
    assert body["data"]["ticket"]["team"]["slug"] == "billing"
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and '"ok"' in delivery.response_excerpt


def test_a_delivered_row_is_not_sent_again(receiver, routed):
    endpoint_for(receiver.url)
    (delivery,) = queue_ticket_event(*routed)
    deliver(delivery.pk)
    assert deliver(delivery.pk) is None
    assert len(receiver.received) == 1


def test_a_5xx_is_retried_later_with_growing_backoff(receiver, routed, settings):
    settings.API_WEBHOOK_BACKOFF_SECONDS = 10
    receiver.script = [503, 502]
    endpoint_for(receiver.url)
    (delivery,) = queue_ticket_event(*routed)
    first = deliver(delivery.pk)
    assert (first.state, first.status_code, first.error) == ("pending", 503, "HTTP 503")
    wait1 = (first.next_retry_at - first.updated_at).total_seconds()
    assert deliver(delivery.pk) is None  # not due yet: a duplicate task does nothing
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_retry_at=first.updated_at)
    second = deliver(delivery.pk)
    wait2 = (second.next_retry_at - second.updated_at).total_seconds()
    assert second.attempts == 2 and 9 <= wait1 <= 11 and 19 <= wait2 <= 21
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_retry_at=second.updated_at)
    assert deliver(delivery.pk).state == "delivered"
    assert len(receiver.received) == 3


def test_a_refused_connection_is_retried_and_then_given_up(routed, settings):
    settings.API_WEBHOOK_BACKOFF_SECONDS = 0
    settings.API_WEBHOOK_MAX_ATTEMPTS = 3
    endpoint_for(free_port_url())
    (delivery,) = queue_ticket_event(*routed)
    states = [deliver(delivery.pk).state for _ in range(3)]
    assert states == ["pending", "pending", "failed"]
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and "ConnectionError" in delivery.error and delivery.next_retry_at is None
    assert deliver(delivery.pk) is None


def test_a_4xx_is_not_retried(receiver, routed):
    receiver.script = [410]
    endpoint_for(receiver.url)
    (delivery,) = queue_ticket_event(*routed)
    assert deliver(delivery.pk).state == "failed"


def test_a_worker_that_died_mid_send_leaves_the_row_to_the_next_one(receiver, routed):
    from datetime import timedelta

    from django.utils import timezone

    endpoint_for(receiver.url)
    (delivery,) = queue_ticket_event(*routed)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        state="sending", lease_until=timezone.now() + timedelta(minutes=1)
    )
    assert deliver(delivery.pk) is None  # another worker holds it
    WebhookDelivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert deliver(delivery.pk).state == "delivered"


def test_a_webhook_error_never_breaks_the_sender_of_the_signal(ticket, teams, champion, monkeypatch):
    endpoint_for("http://127.0.0.1:9/x")
    prediction = decide(ticket, teams["billing"], "auto_routed", champion)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("api.webhooks.queue_ticket_event", broken)
    ticket_decided.send(sender=None, ticket=ticket, prediction=prediction)  # must not raise


def test_the_task_body_schedules_its_own_retry(receiver, routed, settings, monkeypatch):
    """Unit test of the task body: the re-enqueue is observed, not sent."""
    settings.API_WEBHOOK_BACKOFF_SECONDS = 5
    receiver.script = [500]
    endpoint_for(receiver.url)
    (delivery,) = queue_ticket_event(*routed)
    scheduled = []
    monkeypatch.setattr("api.tasks.enqueue_delivery", lambda pk, countdown=0: scheduled.append((pk, countdown)))
    assert deliver_webhook_task.run(delivery.pk) == "pending"
    assert scheduled and scheduled[0][0] == delivery.pk and 3 <= scheduled[0][1] <= 5


@pytest.mark.django_db(transaction=True)
def test_a_decision_reaches_a_real_endpoint_through_a_real_worker_after_a_retry(receiver):
    """End to end: signal → delivery row → Redis → worker process → HTTP POST (503, then 200)."""
    from mlops.models import ModelVersion

    team = Team.objects.create(slug="billing", name="Billing")
    version = ModelVersion.objects.create(scorer="nli", model_ref="t", version="1", status="champion")
    ticket = Ticket.objects.create(subject="Refund", body="Refund please", team=team, status="routed")
    endpoint = endpoint_for(receiver.url)
    receiver.script = [503]
    purge_queues()
    env = {"API_WEBHOOK_BACKOFF_SECONDS": "0.5", "TRIAGE_WARM_MODELS": "0"}
    with celery_worker(queues="default", extra_env=env) as worker:
        prediction = decide(ticket, team, "auto_routed", version, confidence=0.97)
        ticket_decided.send(sender=None, ticket=ticket, prediction=prediction)
        delivered = wait_for(
            lambda: WebhookDelivery.objects.filter(endpoint=endpoint, state="delivered").first(),
            timeout=60,
            message="the webhook to be delivered\n" + worker.log()[-2000:],
        )
    assert delivered.attempts == 2
    assert len(receiver.received) == 2
    last = receiver.received[-1]
    assert verify_signature(
        endpoint.secret, last.headers["X-Triage-Timestamp"], last.body, last.headers["X-Triage-Signature"]
    )
    assert json.loads(last.body)["data"]["ticket"]["id"] == ticket.pk


def test_an_endpoint_switched_off_after_queueing_is_not_called(receiver, routed):
    endpoint = endpoint_for(receiver.url)
    (delivery,) = queue_ticket_event(*routed)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    result = deliver(delivery.pk)
    assert (result.state, result.error) == ("failed", "endpoint is inactive")
    assert receiver.received == []


def test_the_sweep_resends_deliveries_whose_retry_is_due_or_whose_worker_died(routed, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from api.tasks import retry_due_webhooks_task

    endpoint_for("http://127.0.0.1:9/x")
    now = timezone.now()
    due, later, abandoned, held, done = (
        WebhookDelivery.objects.create(endpoint=WebhookEndpoint.objects.get(), event="ticket.routed", payload={})
        for _ in range(5)
    )
    WebhookDelivery.objects.filter(pk=due.pk).update(next_retry_at=now - timedelta(seconds=1))
    WebhookDelivery.objects.filter(pk=later.pk).update(next_retry_at=now + timedelta(hours=1))
    WebhookDelivery.objects.filter(pk=abandoned.pk).update(state="sending", lease_until=now - timedelta(seconds=1))
    WebhookDelivery.objects.filter(pk=held.pk).update(state="sending", lease_until=now + timedelta(minutes=1))
    WebhookDelivery.objects.filter(pk=done.pk).update(state="delivered")
    sent = []
    monkeypatch.setattr("api.tasks.enqueue_delivery", lambda pk, countdown=0: sent.append(pk))
    assert retry_due_webhooks_task.run() == 2
    assert sorted(sent) == sorted([due.pk, abandoned.pk])
