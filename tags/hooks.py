"""Tags are scored in the routing micro-batch: ``triage.signals.tickets_routed`` → ``score_tags``.

Triage never imports tags (docs/architecture.md); it sends its signals from its routing task, in the
worker whose models are warm, with the ids of the tickets it just routed and its claim. The batch's
``tag`` jobs (``tags.tasks``) are recorded first, in the transaction that ends the routing
(``routing_finishing``): a batch whose tagging fails, or whose worker dies before it tags, is sent again
by the sweeper.
"""

from __future__ import annotations

import logging

from triage.signals import routing_finishing, tickets_routed

logger = logging.getLogger(__name__)


def on_routing_finishing(sender, ticket_ids: list[int], claim: str, **kwargs) -> None:
    from .tasks import record_tag_jobs

    record_tag_jobs(ticket_ids, claim)


def on_tickets_routed(sender, ticket_ids: list[int], claim: str | None = None, **kwargs) -> None:
    from .tasks import tag_routed_tickets

    tag_routed_tickets(ticket_ids, claim)


routing_finishing.connect(on_routing_finishing, dispatch_uid="tags.hooks.on_routing_finishing")
tickets_routed.connect(on_tickets_routed, dispatch_uid="tags.hooks.on_tickets_routed")
