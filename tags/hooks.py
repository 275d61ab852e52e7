"""Tags are scored in the routing micro-batch: ``triage.signals.tickets_routed`` → ``score_tags``.

Triage never imports tags (docs/architecture.md); it sends the signal from its routing task, in the
worker whose models are warm, with the ids of the tickets it just routed. Their ``tag`` jobs
(``tags.tasks``) are recorded first: a batch whose tagging fails is sent again by the sweeper.
"""

from __future__ import annotations

import logging

from triage.signals import tickets_routed

logger = logging.getLogger(__name__)


def on_tickets_routed(sender, ticket_ids: list[int], **kwargs) -> None:
    from .tasks import tag_routed_tickets

    tag_routed_tickets(ticket_ids)


tickets_routed.connect(on_tickets_routed, dispatch_uid="tags.hooks.on_tickets_routed")
