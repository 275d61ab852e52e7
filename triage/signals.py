"""Signals other apps listen to (webhooks, metrics) without the router importing them.

``ticket_decided`` is sent once per stored routing decision, after its transaction commits,
with ``ticket`` and ``prediction`` (a triage.models.Prediction; its ``decision`` says
auto_routed, suggested or abstained, i.e. needs triage).

``tickets_routed`` is sent by the routing task once a batch of tickets has been routed (decided now
or before), in the worker that routed them, with ``ticket_ids``: per-ticket scoring that belongs in
the same micro-batch (ticket tags, ``tags.hooks``) listens to it while the models are warm. A
receiver's failure must not fail the routing (``send_robust``).
"""

from __future__ import annotations

from django.dispatch import Signal

ticket_decided = Signal()
tickets_routed = Signal()
