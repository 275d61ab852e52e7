"""Celery tasks of the API app: webhook delivery. They take ids and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from .webhooks import deliver, due_delivery_ids, enqueue_delivery


@shared_task(name="api.tasks.deliver_webhook_task", ignore_result=True)
def deliver_webhook_task(delivery_id: int) -> str:
    """One attempt at a webhook delivery; schedules the next attempt itself when it must retry."""
    delivery = deliver(delivery_id)
    if delivery is None:
        return "skipped"
    if delivery.state == delivery.State.PENDING and delivery.next_retry_at is not None:
        wait = max(0.0, (delivery.next_retry_at - timezone.now()).total_seconds())
        enqueue_delivery(delivery.pk, countdown=wait)
    return delivery.state


@shared_task(name="api.tasks.retry_due_webhooks_task", ignore_result=True)
def retry_due_webhooks_task() -> int:
    """Sweep for deliveries whose scheduled retry message was lost (a broker restart, say)."""
    ids = due_delivery_ids()
    for delivery_id in ids:
        enqueue_delivery(delivery_id)
    return len(ids)
