"""Tags are scored in the routing task's batch, through triage's signal; a tagging failure never fails routing."""

from __future__ import annotations

import pytest

from tags.models import TagPrediction
from tags.services import create_tag_set
from triage.models import Ticket
from triage.signals import tickets_routed

pytestmark = pytest.mark.django_db


def test_tickets_routed_scores_their_tags():
    create_tag_set(
        "Language",
        kind="single",
        method="language",
        tags=[{"slug": "en", "name": "English"}, {"slug": "de", "name": "German"}],
    )
    ticket = Ticket.objects.create(subject="Heizung", body="Die Heizung geht nicht an, bitte helfen Sie mir.")
    responses = tickets_routed.send_robust(sender=None, ticket_ids=[ticket.pk])
    assert all(not isinstance(error, Exception) for _, error in responses)
    assert TagPrediction.objects.get(ticket=ticket, is_set=True).tag.slug == "de"


def test_the_routing_task_sends_tickets_routed_after_routing(settings, django_capture_on_commit_callbacks):
    from triage.models import Team
    from triage.tasks import route_ticket_task

    settings.TRIAGE_ROUTING_SCORER = "embedding"  # the packaged bi-encoder: fast, offline, real

    Team.objects.create(slug="billing", name="Billing", description="Invoices and refunds.")
    Team.objects.create(slug="orders", name="Orders", description="Parcels and deliveries.")
    create_tag_set(
        "Language",
        kind="single",
        method="language",
        tags=[{"slug": "en", "name": "English"}, {"slug": "de", "name": "German"}],
    )
    ticket = Ticket.objects.create(subject="Charged twice", body="I was charged twice for my order, please refund.")
    seen = []
    tickets_routed.connect(lambda sender, ticket_ids, **kw: seen.append(ticket_ids), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            route_ticket_task.apply(args=[ticket.pk])
    finally:
        tickets_routed.disconnect(dispatch_uid="t")
    assert seen == [[ticket.pk]]
    assert TagPrediction.objects.get(ticket=ticket, is_set=True).tag.slug == "en"
