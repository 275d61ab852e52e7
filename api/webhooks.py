"""Outgoing webhooks: which events exist, how a delivery is signed, sent, retried and logged.

Every POST carries::

    X-Triage-Event: ticket.routed
    X-Triage-Delivery: <delivery id>
    X-Triage-Timestamp: <unix seconds>
    X-Triage-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + raw body, keyed by the endpoint secret>

The timestamp is inside the signed bytes so that a receiver can refuse old, replayed requests;
``verify_signature`` is the reference check a receiver can copy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from triage.models import Prediction, Ticket

from .models import WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

Event = WebhookEndpoint.Event
EVENT_FOR_DECISION = {
    Prediction.Decision.AUTO_ROUTED: Event.TICKET_ROUTED,
    # A suggestion waits for a person to confirm it, as an abstention does.
    Prediction.Decision.SUGGESTED: Event.TICKET_NEEDS_TRIAGE,
    Prediction.Decision.ABSTAINED: Event.TICKET_NEEDS_TRIAGE,
}
RETRY_STATUS = {408, 425, 429}
EXCERPT_CHARS = 2000


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Triage-Signature`` value for ``body`` sent at ``timestamp``.

    >>> sign("s3cret", "1700000000", b'{"event":"ticket.routed"}')[:7]
    'sha256='
    """
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def ticket_part(ticket: Ticket) -> dict:
    return {
        "id": ticket.pk,
        "external_id": ticket.external_id,
        "subject": ticket.subject,
        "status": ticket.status,
        "channel": ticket.channel,
        "team": {"id": ticket.team.pk, "slug": ticket.team.slug} if ticket.team_id else None,
        "url": f"{settings.SITE_URL.rstrip('/')}/api/tickets/{ticket.pk}/",
    }


def ticket_payload(ticket: Ticket, prediction: Prediction) -> dict:
    team = prediction.chosen_team
    return {
        "ticket": ticket_part(ticket),
        "prediction": {
            "id": prediction.pk,
            "decision": prediction.decision,
            "team": {"id": team.pk, "slug": team.slug} if team is not None else None,
            "confidence": prediction.confidence,
            "threshold": prediction.threshold,
            "model_version": prediction.model_version_id,
        },
    }


def queue_ticket_event(ticket: Ticket, prediction: Prediction) -> list[WebhookDelivery]:
    """Store one delivery per subscribed endpoint and send each once the rows are committed."""
    event = EVENT_FOR_DECISION.get(prediction.decision)
    if event is None:
        return []
    endpoints = list(WebhookEndpoint.objects.filter(active=True, events__contains=[event]))
    if not endpoints:
        return []
    payload = json.loads(json.dumps(ticket_payload(ticket, prediction), cls=DjangoJSONEncoder))
    with transaction.atomic():
        deliveries = [WebhookDelivery.objects.create(endpoint=e, event=event, payload=payload) for e in endpoints]
        for delivery in deliveries:
            transaction.on_commit(lambda pk=delivery.pk: enqueue_delivery(pk))
    return deliveries


def queue_tagged_events(ticket_ids: list[int]) -> list[WebhookDelivery]:
    """``ticket.tagged`` for each alerting tag now set on these tickets, once per ticket and tag: an
    endpoint that already has a delivery of it (whatever its state) gets none again."""
    from tags.dashboard import alerting, tag_states

    endpoints = list(WebhookEndpoint.objects.filter(active=True, events__contains=[Event.TICKET_TAGGED]))
    if not endpoints:
        return []
    deliveries = []
    tickets = Ticket.objects.select_related("team").in_bulk(ticket_ids)
    for ticket_id, states in tag_states(ticket_ids).items():
        for state in states.values():
            if not (state.is_set and alerting(state.tag)) or ticket_id not in tickets:
                continue
            ticket = tickets[ticket_id]
            payload = {
                "ticket": ticket_part(ticket),
                "tag": {"tag": state.key, "name": state.name, "probability": state.probability,
                        "by_agent": state.by_agent},
            }  # fmt: skip
            with transaction.atomic():
                # Serialise senders for this ticket, so two batches cannot both find no delivery yet.
                Ticket.objects.select_for_update().filter(pk=ticket_id).first()
                for endpoint in endpoints:
                    sent = WebhookDelivery.objects.filter(
                        endpoint=endpoint,
                        event=Event.TICKET_TAGGED,
                        payload__ticket__id=ticket_id,
                        payload__tag__tag=state.key,
                    )
                    if sent.exists():
                        continue
                    delivery = WebhookDelivery.objects.create(
                        endpoint=endpoint, event=Event.TICKET_TAGGED, payload=payload
                    )
                    transaction.on_commit(lambda pk=delivery.pk: enqueue_delivery(pk))
                    deliveries.append(delivery)
    return deliveries


def on_tags_changed(sender, ticket_ids: list[int], **kwargs) -> None:
    """``tags.signals.tags_changed`` receiver (after commit). A webhook problem never fails the change."""
    try:
        queue_tagged_events(ticket_ids)
    except Exception:
        logger.exception("could not queue ticket.tagged webhooks for tickets %s", ticket_ids)


def on_ticket_decided(sender, ticket: Ticket, prediction: Prediction, **kwargs) -> None:
    """``triage.signals.ticket_decided`` receiver. A webhook problem must never fail the routing."""
    try:
        queue_ticket_event(ticket, prediction)
    except Exception:
        logger.exception("could not queue webhooks for ticket %s", getattr(ticket, "pk", None))


def enqueue_delivery(delivery_id: int, countdown: float = 0) -> None:
    """Send one delivery attempt, now or after ``countdown`` seconds. Never raises for the broker.

    A wait longer than ``TRIAGE_TASK_MAX_COUNTDOWN_SECONDS`` is not sent at all: a worker would hold the
    message unacknowledged past the visibility timeout and Redis would hand out copies. The sweep
    (``retry_due_webhooks_task``) sends the delivery once it is due, as it does when the broker is down.
    """
    from config.celery import send_or_defer

    from .tasks import deliver_webhook_task

    if countdown <= settings.TRIAGE_TASK_MAX_COUNTDOWN_SECONDS:
        send_or_defer(deliver_webhook_task, delivery_id, countdown=countdown)


def backoff_seconds(attempts: int) -> float:
    """Wait before attempt ``attempts + 1``: base, 2×base, 4×base, ... up to the cap."""
    return min(settings.API_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempts - 1), settings.API_WEBHOOK_BACKOFF_MAX_SECONDS)


def _claim(delivery_id: int) -> bool:
    now = timezone.now()
    lease = now + timedelta(seconds=settings.API_WEBHOOK_TIMEOUT_SECONDS + 30)
    due = Q(state=WebhookDelivery.State.PENDING) & (Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now))
    abandoned = Q(state=WebhookDelivery.State.SENDING, lease_until__lt=now)
    claimed = (
        WebhookDelivery.objects.filter(pk=delivery_id)
        .filter(due | abandoned)
        .update(state=WebhookDelivery.State.SENDING, lease_until=lease, attempts=F("attempts") + 1, updated_at=now)
    )
    return claimed == 1


def deliver(delivery_id: int) -> WebhookDelivery | None:
    """Make one attempt at a delivery that is due, and record the outcome on its row.

    Returns the row, or None when there was nothing to do (delivered, given up, not due yet, or
    being sent by another worker): a redelivered task is harmless.
    """
    if not _claim(delivery_id):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    body = json.dumps(
        {
            "id": delivery.pk,
            "event": delivery.event,
            "created_at": delivery.created_at.isoformat(),
            "data": delivery.payload,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "triage-webhooks/1",
        "X-Triage-Event": delivery.event,
        "X-Triage-Delivery": str(delivery.pk),
        "X-Triage-Timestamp": timestamp,
        "X-Triage-Signature": sign(endpoint.secret, timestamp, body),
    }
    retry = False
    delivery.status_code = None
    delivery.response_excerpt = ""
    delivery.error = ""
    if not endpoint.active:
        delivery.error = "endpoint is inactive"
    else:
        try:
            response = requests.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=settings.API_WEBHOOK_TIMEOUT_SECONDS,
                allow_redirects=False,  # a redirect could turn the POST into a GET elsewhere
            )
        except requests.RequestException as exc:  # connection refused, timeout, TLS, ...
            delivery.error = f"{type(exc).__name__}: {exc}"[:2000]
            retry = True
        else:
            delivery.status_code = response.status_code
            delivery.response_excerpt = response.text[:EXCERPT_CHARS]
            if 200 <= response.status_code < 300:
                delivery.state = WebhookDelivery.State.DELIVERED
                delivery.delivered_at = timezone.now()
            else:
                delivery.error = f"HTTP {response.status_code}"
                retry = response.status_code >= 500 or response.status_code in RETRY_STATUS
    if delivery.state != WebhookDelivery.State.DELIVERED:
        if retry and delivery.attempts < settings.API_WEBHOOK_MAX_ATTEMPTS:
            delivery.state = WebhookDelivery.State.PENDING
            delivery.next_retry_at = timezone.now() + timedelta(seconds=backoff_seconds(delivery.attempts))
        else:
            delivery.state = WebhookDelivery.State.FAILED
            delivery.next_retry_at = None
    delivery.lease_until = None
    delivery.save(
        update_fields=[
            "state",
            "status_code",
            "response_excerpt",
            "error",
            "next_retry_at",
            "lease_until",
            "delivered_at",
            "updated_at",
        ]
    )
    log = logger.info if delivery.state == WebhookDelivery.State.DELIVERED else logger.warning
    log(
        "webhook delivery %s (%s → %s) attempt %s: %s %s",
        delivery.pk,
        delivery.event,
        endpoint.url,
        delivery.attempts,
        delivery.state,
        delivery.error or delivery.status_code,
    )
    return delivery


def redeliver(delivery: WebhookDelivery) -> None:
    """Send a failed or delivered event again, as a fresh series of attempts (admin action)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).exclude(state=WebhookDelivery.State.SENDING).update(
        state=WebhookDelivery.State.PENDING, attempts=0, next_retry_at=None, delivered_at=None, error=""
    )
    transaction.on_commit(lambda: enqueue_delivery(delivery.pk))


def due_delivery_ids(limit: int = 500) -> list[int]:
    """Deliveries whose retry time has passed or whose worker died mid-send: the sweep sends these."""
    now = timezone.now()
    return list(
        WebhookDelivery.objects.filter(
            Q(state=WebhookDelivery.State.PENDING, next_retry_at__lte=now)
            | Q(
                state=WebhookDelivery.State.PENDING,
                next_retry_at__isnull=True,
                created_at__lte=now - timedelta(minutes=5),
            )
            | Q(state=WebhookDelivery.State.SENDING, lease_until__lt=now)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
