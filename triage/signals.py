"""Signals other apps listen to (webhooks, metrics) without the router importing them.

``ticket_decided`` is sent once per stored routing decision, after its transaction commits,
with ``ticket`` and ``prediction`` (a triage.models.Prediction; its ``decision`` says
auto_routed, suggested or abstained, i.e. needs triage).
"""

from __future__ import annotations

from django.dispatch import Signal

ticket_decided = Signal()
