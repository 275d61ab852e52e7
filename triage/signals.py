"""Signals other apps listen to (webhooks, metrics) without the router importing them.

``ticket_decided`` is sent once per stored routing decision, after its transaction commits,
with ``ticket`` and ``prediction`` (a triage.models.Prediction; its ``decision`` says
auto_routed, suggested or abstained, i.e. needs triage).

``routing_finishing`` is sent by the routing task inside the transaction that marks a batch's routing
jobs done, with ``ticket_ids`` and ``claim`` (the task's claim token): a receiver records there the
per-ticket work that follows routing (``triage.work.hold_work``), so that the database failing between
the two cannot lose it. Database writes only; an error rolls the batch's end back and the task retries.

``tickets_routed`` is sent by the routing task once a batch of tickets has been routed (decided now
or before), in the worker that routed them, with ``ticket_ids`` and ``claim``: per-ticket scoring that
belongs in the same micro-batch (ticket tags, ``tags.hooks``) listens to it while the models are warm,
and does the work it recorded under ``claim``. A receiver's failure must not fail the routing
(``send_robust``).
"""

from __future__ import annotations

from django.dispatch import Signal

ticket_decided = Signal()
routing_finishing = Signal()
tickets_routed = Signal()
