"""Label collection: the latest label of a ticket wins; renamed, deleted and deactivated teams are explicit."""

from __future__ import annotations

import pytest

from learning.labels import EXCLUDED_DELETED, EXCLUDED_INACTIVE, collect_labels, data_hash
from tests.retraining.builders import make_ticket
from triage.models import Correction, Team, TeamChange
from triage.services import record_label

pytestmark = pytest.mark.django_db


def label(ticket, team, kind=Correction.Kind.CORRECTED):
    return record_label(ticket, team, kind=kind)


def test_the_latest_label_of_a_ticket_wins_and_earlier_ones_stay_in_the_audit_trail(teams):
    ticket = make_ticket("I was charged twice", 1)
    label(ticket, teams["queue-a"])
    label(ticket, teams["queue-b"])
    collected = collect_labels()
    assert [(e.ticket_id, e.label) for e in collected.examples] == [(ticket.pk, "queue-b")]
    assert ticket.corrections.count() == 2


def test_labels_recorded_after_the_cutoff_are_not_used(teams):
    ticket = make_ticket("I was charged twice", 1)
    first = label(ticket, teams["queue-a"])
    label(ticket, teams["queue-b"])
    assert collect_labels(until=first.created_at).examples[0].label == "queue-a"


def test_a_renamed_team_keeps_its_labels_under_its_new_slug(teams):
    ticket = make_ticket("Where is my parcel", 1)
    label(ticket, teams["queue-b"])
    team = teams["queue-b"]
    team.slug, team.name = "delivery", "Delivery"
    team.save()
    collected = collect_labels()
    assert collected.examples[0].label == "delivery"
    assert collected.remapped == {"queue-b -> delivery": 1}
    assert collected.excluded == {}


def test_labels_of_a_deleted_team_are_excluded_and_counted(teams):
    kept, dropped = make_ticket("charged twice", 1), make_ticket("parcel lost", 2)
    label(kept, teams["queue-a"])
    label(dropped, teams["queue-b"])
    teams["queue-b"].delete()
    collected = collect_labels()
    assert [e.ticket_id for e in collected.examples] == [kept.pk]
    assert collected.excluded == {EXCLUDED_DELETED: 1}
    assert collected.report()["labelled_tickets"] == 2


def test_labels_of_a_deleted_team_follow_its_slug_to_a_team_that_took_it_over(teams):
    ticket = make_ticket("parcel lost", 1)
    label(ticket, teams["queue-b"])
    teams["queue-b"].delete()
    successor = Team.objects.create(slug="queue-b", name="Queue B (new)")
    collected = collect_labels()
    assert collected.examples[0].label == successor.slug
    assert collected.excluded == {}


def test_labels_of_a_deleted_team_follow_the_slug_history_of_the_audit_trail(teams):
    ticket = make_ticket("parcel lost", 1)
    label(ticket, teams["queue-b"])
    delivery = Team.objects.create(slug="delivery", name="Delivery")
    TeamChange.objects.create(team=delivery, field="slug", before="queue-b", after="delivery", reason="merged")
    teams["queue-b"].delete()
    collected = collect_labels()
    assert collected.examples[0].label == "delivery"
    assert collected.remapped == {"queue-b -> delivery": 1}


def test_labels_of_a_deactivated_team_are_excluded_and_counted(teams):
    ticket = make_ticket("parcel lost", 1)
    label(ticket, teams["queue-b"])
    Team.objects.filter(pk=teams["queue-b"].pk).update(active=False)
    collected = collect_labels()
    assert collected.examples == []
    assert collected.excluded == {EXCLUDED_INACTIVE: 1}


def test_a_ticket_relabelled_away_from_a_deleted_team_counts_with_its_latest_label(teams):
    ticket = make_ticket("parcel lost", 1)
    label(ticket, teams["queue-c"])
    label(ticket, teams["queue-b"])
    teams["queue-c"].delete()
    assert [e.label for e in collect_labels().examples] == ["queue-b"]


def test_the_data_hash_changes_with_a_label_and_not_with_the_order_of_examples(teams):
    a, b = make_ticket("charged twice", 1), make_ticket("parcel lost", 2)
    label(a, teams["queue-a"])
    label(b, teams["queue-b"])
    examples = collect_labels().examples
    assert data_hash(examples) == data_hash(list(reversed(examples)))
    label(b, teams["queue-c"])
    assert data_hash(collect_labels().examples) != data_hash(examples)
    assert data_hash(examples, {"holdout": 0.25}) != data_hash(examples, {"holdout": 0.3})


def test_counting_labels_does_not_read_ticket_texts(teams, django_assert_num_queries):
    for n in range(5):
        label(make_ticket(f"ticket {n}"), teams["queue-a"])
    with django_assert_num_queries(2):  # the teams, then the latest labels: no query per ticket
        counted = collect_labels(texts=False)
    assert counted.counts == {"queue-a": 5} and {e.text for e in counted.examples} == {""}
