"""The latest label and the latest prediction of a ticket: one definition each, deterministic on ties."""

from __future__ import annotations

import pytest
from django.utils import timezone

from mlops.models import ModelVersion
from triage.models import Correction, Prediction, Ticket

pytestmark = pytest.mark.django_db


def _predict(ticket: Ticket, version: ModelVersion, slug: str, when) -> Prediction:
    prediction = Prediction.objects.create(
        ticket=ticket,
        model_version=version,
        scorer="embedding",
        scores={slug: 0.9},
        confidence=0.9,
        decision="suggested",
    )
    Prediction.objects.filter(pk=prediction.pk).update(created_at=when)  # auto_now_add ignores a given value
    return prediction


def _label(ticket: Ticket, team, when) -> Correction:
    label = Correction.objects.create(ticket=ticket, kind="corrected", to_team=team, to_team_slug=team.slug)
    Correction.objects.filter(pk=label.pk).update(created_at=when)
    return label


def test_predictions_made_at_the_same_moment_resolve_to_the_one_stored_last(teams):
    ticket = Ticket.objects.create(subject="Refund", body="Where is my refund?")
    versions = [ModelVersion.objects.create(scorer="embedding", model_ref="m", version=f"v{i}") for i in range(3)]
    moment = timezone.now()
    _predict(ticket, versions[0], "billing", moment - timezone.timedelta(minutes=1))
    _predict(ticket, versions[1], "billing", moment)
    last = _predict(ticket, versions[2], "delivery", moment)
    assert ticket.predictions.latest() == last
    assert ticket.predictions.newest_first().first() == last
    assert list(Prediction.objects.latest_per_ticket()) == [last]


def test_an_empty_set_of_predictions_has_no_latest(teams):
    ticket = Ticket.objects.create(subject="Refund", body="Where is my refund?")
    assert ticket.predictions.newest_first().first() is None
    with pytest.raises(Prediction.DoesNotExist):
        ticket.predictions.latest()


def test_each_ticket_counts_with_its_latest_label_only_and_ties_go_to_the_later_row(teams):
    first = Ticket.objects.create(subject="A", body="a")
    second = Ticket.objects.create(subject="B", body="b")
    moment = timezone.now()
    _label(first, teams["billing"], moment - timezone.timedelta(hours=1))
    _label(first, teams["delivery"], moment)
    _label(second, teams["delivery"], moment)
    _label(second, teams["billing"], moment)  # same moment, stored later: it wins
    assert Correction.objects.slug_per_ticket() == {first.pk: "delivery", second.pk: "billing"}
    assert [c.to_team_slug for c in Correction.objects.latest_per_ticket()] == ["delivery", "billing"]
    assert Correction.objects.filter(ticket=first).slug_per_ticket() == {first.pk: "delivery"}
