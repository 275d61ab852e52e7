"""The Celery app. Queues: ``default``, ``inference`` (models, GPU when present) and ``training``."""

from __future__ import annotations

import logging
import os
import time

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

app = Celery("triage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("inference"), Queue("training"))
app.autodiscover_tasks()

# After a failed send, sends in this process are not tried for this long: an outage costs one wait,
# not one per message (an import of 10,000 tickets would otherwise wait 0.2 s per message).
BROKER_PAUSE_SECONDS = 5.0
_broker_down_until = 0.0


def broker_errors() -> tuple[type[BaseException], ...]:
    """What publishing raises when the broker is down or unreachable."""
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (KombuOperationalError, RedisConnectionError, RedisTimeoutError, OSError)


def send_or_defer(task, *args, countdown: float | None = None, skip_when_down: bool = True) -> bool:
    """``task.apply_async(args)``; False, logged and not raised, when the broker is unreachable.

    For work that something else sends later when the broker is back: the ticket-work and webhook
    sweepers, or an article left ``pending`` for the next re-index. With ``skip_when_down`` a send
    within ``BROKER_PAUSE_SECONDS`` of a failed one is not tried; sweepers, which run because the
    broker delivered them, pass False.

    >>> send_or_defer(route_ticket_task, ticket.pk)          # doctest: +SKIP
    True
    """
    global _broker_down_until
    if skip_when_down and time.monotonic() < _broker_down_until:
        return False
    try:
        task.apply_async(args=args, countdown=countdown)
    except broker_errors() as exc:
        _broker_down_until = time.monotonic() + BROKER_PAUSE_SECONDS
        logger.warning("could not send %s%s (%s); it will be sent later", task.name, args, exc)
        return False
    _broker_down_until = 0.0
    return True


@app.task(name="config.ping")
def ping() -> str:
    """Round trip through broker and worker, used by /healthz."""
    return "pong"
