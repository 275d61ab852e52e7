"""``tags_changed`` is sent, after the transaction commits, with the ``ticket_ids`` whose tags may have
changed: scored in the routing batch (``tags.hooks``) or added / removed by an agent (``change_tag``).
Apps above tags (the API's ``ticket.tagged`` webhook) listen; tags imports none of them."""

from __future__ import annotations

from django.dispatch import Signal

tags_changed = Signal()
