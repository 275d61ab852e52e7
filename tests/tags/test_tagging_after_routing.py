"""Tags are scored in the routing task's batch, through triage's signal; a tagging failure never fails routing."""

from __future__ import annotations

import pytest

from tags.models import TagPrediction
from tags.services import create_tag_set
from triage.models import Ticket
from triage.signals import tickets_routed

pytestmark = pytest.mark.django_db


def routable_english_ticket() -> Ticket:
    """Two teams, a language tag set and an English ticket to route."""
    from triage.models import Team

    Team.objects.create(slug="billing", name="Billing", description="Invoices and refunds.")
    Team.objects.create(slug="orders", name="Orders", description="Parcels and deliveries.")
    create_tag_set(
        "Language",
        kind="single",
        method="language",
        tags=[{"slug": "en", "name": "English"}, {"slug": "de", "name": "German"}],
    )
    return Ticket.objects.create(subject="Charged twice", body="I was charged twice for my order, please refund.")


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
    from triage.tasks import route_ticket_task

    settings.TRIAGE_ROUTING_SCORER = "embedding"  # the packaged bi-encoder: fast, offline, real
    ticket = routable_english_ticket()
    seen = []
    tickets_routed.connect(lambda sender, ticket_ids, **kw: seen.append(ticket_ids), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            route_ticket_task.apply(args=[ticket.pk])
    finally:
        tickets_routed.disconnect(dispatch_uid="t")
    assert seen == [[ticket.pk]]
    assert TagPrediction.objects.get(ticket=ticket, is_set=True).tag.slug == "en"


def test_the_tag_job_is_recorded_in_the_transaction_that_ends_the_routing(settings):
    """The database failing right after the routing jobs are marked done would have lost the tags' job: it is
    recorded in the same transaction, so the failure rolls both back and the task's retry does both."""
    from django.db import OperationalError

    from triage.models import TicketJob
    from triage.signals import routing_finishing
    from triage.tasks import route_ticket_task
    from triage.work import request_work

    settings.TRIAGE_ROUTING_SCORER = "embedding"
    ticket = routable_english_ticket()
    request_work(ticket.pk, ["route"])
    seen = []

    def database_dies_once(sender, ticket_ids, claim, **kwargs):
        seen.append(TicketJob.objects.filter(ticket=ticket, kind="tag").exists())  # recorded, not committed
        if len(seen) == 1:
            raise OperationalError("server closed the connection unexpectedly")

    routing_finishing.connect(database_dies_once, weak=False, dispatch_uid="dies-once")
    try:
        route_ticket_task.apply(args=[ticket.pk])  # eager: the retry runs at once
    finally:
        routing_finishing.disconnect(dispatch_uid="dies-once")
    assert seen == [True, True]
    jobs = {job.kind: job for job in TicketJob.objects.filter(ticket=ticket)}
    assert jobs["route"].done_at is not None and jobs["tag"].done_at is not None
    assert TagPrediction.objects.get(ticket=ticket, is_set=True).tag.slug == "en"
