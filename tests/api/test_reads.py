"""The API's read path (api/reads.py) answers exactly what the serializers would, byte for byte."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from api import reads
from api.serializers import TicketDetailSerializer, TicketSerializer
from search.models import Suggestion
from tags.dashboard import tag_states
from tags.models import Tag, TagLabel, TagPrediction, TagSet
from tests.api.realistic import build_help_desk
from triage.models import Correction, Prediction, Ticket


def as_json(data) -> str:
    """What the renderer would write: same keys in the same order, same values."""
    return json.dumps(data, ensure_ascii=False)


def serialized_tickets(pks: list[int]) -> list[dict]:
    by_pk = Ticket.objects.select_related("team").annotate(latest_decision=reads.latest_decision()).in_bulk(pks)
    tickets = [by_pk[pk] for pk in pks]
    return TicketSerializer(tickets, many=True, context={"tag_states": tag_states(pks)}).data


def serialized_detail(pk: int) -> dict:
    ticket = Ticket.objects.select_related("team").annotate(latest_decision=reads.latest_decision()).get(pk=pk)
    return TicketDetailSerializer(ticket).data


@pytest.fixture
def help_desk(db):
    """The bench's help desk, and the rows it never makes: a ticket never routed, with no team, no
    suggestion and no label; a label without agent or from-team; a suggestion whose passage is gone;
    a tag only an agent set (never scored); a tag label that removes; an archived tag and a tag of an
    inactive set, scored but never shown."""
    build_help_desk(40)
    bare = Ticket.objects.create(subject="", body="Nothing happened yet", requester="", team=None)
    odd = Ticket.objects.filter(suggestions__isnull=False, predictions__isnull=False).order_by("pk").first()
    Correction.objects.create(
        ticket=odd, kind=Correction.Kind.IMPORTED, to_team=None, to_team_slug="gone", agent=None, source="import"
    )
    Suggestion.objects.filter(ticket=odd, rank=2).update(passage=None, passage_text="")
    Suggestion.objects.filter(ticket=odd, rank=3).update(passage_text="")
    tags = list(Tag.objects.filter(archived_at__isnull=True, tag_set__active=True).order_by("pk"))
    TagPrediction.objects.filter(ticket=odd, tag=tags[0]).delete()
    TagLabel.objects.create(ticket=odd, tag=tags[0], action=TagLabel.Action.ADD)
    TagLabel.objects.create(ticket=odd, tag=tags[1], action=TagLabel.Action.ADD)
    TagLabel.objects.create(ticket=odd, tag=tags[1], action=TagLabel.Action.REMOVE)
    Tag.objects.filter(pk=tags[2].pk).update(archived_at=timezone.now())
    hidden = TagSet.objects.exclude(pk=tags[0].tag_set_id).first()
    TagSet.objects.filter(pk=hidden.pk).update(active=False)
    Prediction.objects.filter(ticket=odd).update(chosen_team=None, confidence=None, threshold=None, latency_ms=None)
    return {"bare": bare.pk, "odd": odd.pk}


def test_a_list_page_reads_as_the_serializer_writes_it(help_desk):
    rows = list(reads.ticket_values()[:60])
    assert len(rows) == Ticket.objects.count() > 40
    assert as_json(reads.ticket_list(rows)) == as_json(serialized_tickets([row["id"] for row in rows]))


def test_every_detail_reads_as_the_serializer_writes_it(help_desk):
    for row in reads.ticket_values():
        assert as_json(reads.ticket_detail(row)) == as_json(serialized_detail(row["id"])), row["id"]


def test_the_odd_rows_are_there_to_compare(help_desk):
    bare = reads.ticket_detail(reads.ticket_values().get(pk=help_desk["bare"]))
    assert bare["team"] is bare["decision"] is bare["prediction"] is None
    assert bare["tags"] == bare["suggestions"] == bare["labels"] == []
    odd = reads.ticket_detail(reads.ticket_values().get(pk=help_desk["odd"]))
    passages = [suggestion["passage"] for suggestion in odd["suggestions"]]
    assert passages[1] is None, "no stored copy and the passage is gone"
    assert passages[2] and passages[2] != passages[0], "no stored copy: the passage's own text"
    assert any(label["agent"] is None and label["to_team"] is None for label in odd["labels"])
    by_agent = [tag for tag in odd["tags"] if tag["by_agent"]]
    assert {(tag["probability"] is None, tag["is_set"]) for tag in by_agent} >= {(True, True), (False, False)}
    shown = Tag.objects.filter(archived_at__isnull=True, tag_set__active=True).count()
    assert 0 < len(odd["tags"]) == shown < Tag.objects.count()
    assert odd["prediction"]["chosen_team"] is None and odd["prediction"]["confidence"] is None


def test_the_api_answers_with_the_read_path(agent_api, help_desk):
    page = agent_api.get("/api/tickets/?page_size=20&page=2").json()
    pks = [row["id"] for row in page["results"]]
    assert len(pks) == 20 and page["count"] == Ticket.objects.count()
    assert as_json(page["results"]) == as_json(serialized_tickets(pks))
    detail = agent_api.get(f"/api/tickets/{help_desk['odd']}/").json()
    assert as_json(detail) == as_json(serialized_detail(help_desk["odd"]))


@pytest.mark.parametrize("pk", ["0", "999999999", str(2**63), "9" * 30])
def test_a_ticket_that_is_not_there_is_a_404_as_before(agent_api, help_desk, pk):
    response = agent_api.get(f"/api/tickets/{pk}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No Ticket matches the given query."}


def test_a_compiled_read_refuses_a_query_with_parameters_besides_its_key(db):
    # A second parameter would be sent the key's value: refused when first compiled, not answered wrongly.
    read = reads.CompiledRead(lambda pk: Ticket.objects.filter(pk=pk, subject="x").values("id"), sample=-1)
    with pytest.raises(ImproperlyConfigured, match="must be its key"):
        read.tuples(1)


def test_a_compiled_read_runs_with_each_key_it_is_given(help_desk):
    read = reads.CompiledRead(lambda pk: Ticket.objects.filter(pk=pk).values("id", "subject"), sample=-1)
    for ticket in Ticket.objects.order_by("pk")[:3]:
        assert read.dicts(ticket.pk) == [{"id": ticket.pk, "subject": ticket.subject}]
    assert read.dicts(-5) == []
