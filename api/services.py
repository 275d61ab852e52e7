"""Idempotent ticket creation: one outcome per (user, Idempotency-Key), replayed to every retry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from triage.models import Ticket

from .models import IdempotencyKey


def request_fingerprint(data: Any) -> str:
    """SHA-256 of the request body as canonical JSON, so that key order and spacing do not matter."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class IdempotencyKeyReused(Exception):
    """The key was used before with a different request body."""


@dataclass(frozen=True)
class Outcome:
    status: int
    body: Any
    replayed: bool = False


def run_once(user, key: str, fingerprint: str, create: Callable[[], tuple[int, Any, Ticket | None]]) -> Outcome:
    """Run ``create`` once per (user, key) and return its stored response to every later call.

    A concurrent request with the same key waits on the key's unique index until the first one
    commits, then replays its answer. When ``create`` raises, nothing is kept, not even the key,
    so that a client can fix its request and send it again under the same key.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    user=user, key=key, request_hash=fingerprint, response_status=0, response_body={}
                )
        except IntegrityError:
            record = IdempotencyKey.objects.get(user=user, key=key)
            if record.request_hash != fingerprint:
                raise IdempotencyKeyReused(key) from None
            return Outcome(record.response_status, record.response_body, replayed=True)
        status, body, ticket = create()
        record.response_status, record.response_body, record.ticket = status, body, ticket
        record.save(update_fields=["response_status", "response_body", "ticket"])
    return Outcome(status, body)
