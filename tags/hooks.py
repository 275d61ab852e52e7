"""Tags are scored in the routing micro-batch: ``triage.signals.tickets_routed`` → ``score_tags``.

Triage never imports tags (docs/architecture.md); it sends the signal from its routing task, in the
worker whose models are warm, with the ids of the tickets it just routed.
"""

from __future__ import annotations

import logging

from triage.signals import tickets_routed

logger = logging.getLogger(__name__)


def on_tickets_routed(sender, ticket_ids: list[int], **kwargs) -> None:
    from django.db import transaction

    from triage.models import Ticket

    from .scoring import score_tags
    from .signals import tags_changed

    score_tags(Ticket.objects.filter(pk__in=ticket_ids).order_by("pk"))
    transaction.on_commit(lambda: tags_changed.send_robust(sender=on_tickets_routed, ticket_ids=list(ticket_ids)))


tickets_routed.connect(on_tickets_routed, dispatch_uid="tags.hooks.on_tickets_routed")
