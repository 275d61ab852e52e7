"""Tag sets and tags: the rules of the data model, through the services, the database and the admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from tags.models import Tag, TagChange, TagLabel, TagSet
from tags.services import (
    add_tag,
    archive_tag,
    create_tag_set,
    record_tag_label,
    remove_tag,
    restore_tag,
    set_tag_set_kind,
    set_tag_threshold,
)
from tests.tags.builders import predict_tag
from triage.models import Ticket

pytestmark = pytest.mark.django_db

URGENCY = [{"name": "low"}, {"name": "normal"}, {"name": "high", "hypothesis": "This ticket is urgent."}]


def _urgency() -> TagSet:
    return create_tag_set("Urgency", kind="single", tags=URGENCY)


def _ticket() -> Ticket:
    return Ticket.objects.create(subject="Heating off", body="The thermostat is offline and the house is cold.")


_predict = predict_tag


def test_it_creates_a_tag_set_with_its_tags_and_an_audit_row():
    urgency = _urgency()
    assert urgency.slug == "urgency" and urgency.single_label
    assert [t.slug for t in urgency.tags.order_by("slug")] == ["high", "low", "normal"]
    assert urgency.tags.get(slug="high").hypothesis == "This ticket is urgent."
    assert TagChange.objects.filter(tag_set=urgency, field="created").count() == 1


@pytest.mark.parametrize(
    ("kind", "tags", "message"),
    [
        ("multi", [], "at least 1 tags"),
        ("single", [{"name": "high"}], "at least 2 tags"),
        ("multi", [{"name": "Outage"}, {"name": "outage"}], "unique in its set"),
        ("multi", [{"name": "a", "slug": "x"}, {"name": "b", "slug": "X"}], "unique in its set"),
        ("multi", [{"name": "  "}], "must not be empty"),
        ("multi", [{"name": "x", "threshold": 1.5}], "between 0 and 1"),
        ("multi", [{"name": "x", "colour": "red"}], "unknown tag fields"),
        ("sometimes", [{"name": "x"}], "must be one of"),
    ],
)
def test_it_refuses_a_bad_tag_set_and_stores_nothing(kind, tags, message):
    with pytest.raises(ValidationError, match=message):
        create_tag_set("Topics", kind=kind, tags=tags)
    assert not TagSet.objects.exists() and not Tag.objects.exists()


def test_it_refuses_a_second_tag_set_of_the_same_name():
    _urgency()
    with pytest.raises(ValidationError, match="already exists"):
        create_tag_set("urgency", kind="multi", tags=[{"name": "x"}])
    assert TagSet.objects.count() == 1


def test_a_language_tag_must_be_a_code_the_detector_knows():
    with pytest.raises(ValidationError, match="ISO 639-1"):
        create_tag_set(
            "Language",
            kind="single",
            method="language",
            tags=[{"name": "English", "slug": "en"}, {"name": "Klingon", "slug": "tlh"}],
        )
    languages = create_tag_set(
        "Language",
        kind="single",
        method="language",
        tags=[{"name": "English", "slug": "en"}, {"name": "German", "slug": "de"}],
    )
    assert languages.tags.count() == 2


def test_the_database_refuses_duplicate_names_in_a_set_whatever_the_case():
    urgency = _urgency()
    with pytest.raises(IntegrityError), transaction.atomic():
        Tag.objects.create(tag_set=urgency, slug="high-2", name="HIGH")
    other = create_tag_set("Priority", kind="single", tags=[{"name": "high"}, {"name": "low"}])
    assert other.tags.filter(name="high").exists()  # unique within a set, not across sets


def test_adding_a_tag_named_like_an_archived_one_says_to_restore_it():
    topics = create_tag_set("Topics", tags=[{"name": "outage"}, {"name": "legal"}])
    archive_tag(topics.tags.get(slug="legal"))
    with pytest.raises(ValidationError, match="archived: restore it instead"):
        add_tag(topics, {"name": "Legal"})
    restored = restore_tag(topics.tags.get(slug="legal"))
    assert not restored.archived


def test_switching_kind_is_refused_once_labels_are_recorded(agent_alice):
    urgency = _urgency()
    set_tag_set_kind(urgency, "multi")  # no labels yet: allowed, audited
    assert TagSet.objects.get(pk=urgency.pk).kind == "multi"
    record_tag_label(_ticket(), urgency.tags.get(slug="high"), "add", agent=agent_alice)
    with pytest.raises(ValidationError, match="1 label\\(s\\) recorded as multi-label"):
        set_tag_set_kind(urgency, "single")
    assert TagSet.objects.get(pk=urgency.pk).kind == "multi"
    assert list(TagChange.objects.filter(field="kind").values_list("before", "after")) == [("single", "multi")]


def test_a_tag_with_labels_cannot_be_deleted_and_is_archived_instead(agent_alice):
    urgency = create_tag_set("Urgency", kind="single", tags=[*URGENCY, {"name": "critical"}])
    critical = urgency.tags.get(slug="critical")
    ticket = _ticket()
    prediction = _predict(ticket, critical)
    label = record_tag_label(ticket, critical, "remove", agent=agent_alice)
    assert label.prediction == prediction  # the label answers the latest prediction
    with pytest.raises(ProtectedError):
        critical.delete()
    assert remove_tag(critical) == "archived"
    critical.refresh_from_db()
    assert critical.archived and TagLabel.objects.get().tag == critical
    with pytest.raises(ValidationError, match="was archived"):
        record_tag_label(ticket, critical, "add", agent=agent_alice)
    assert TagLabel.objects.count() == 1


def test_a_tag_without_history_is_deleted_but_a_set_keeps_the_tags_its_kind_needs():
    urgency = create_tag_set("Urgency", kind="single", tags=[*URGENCY])
    assert remove_tag(urgency.tags.get(slug="normal")) == "deleted"
    with pytest.raises(ValidationError, match="needs 2"):
        remove_tag(urgency.tags.get(slug="low"))
    assert urgency.tags.current().count() == 2


def test_a_label_must_answer_its_own_tickets_prediction(agent_alice):
    urgency = _urgency()
    high, low = urgency.tags.get(slug="high"), urgency.tags.get(slug="low")
    ticket, other = _ticket(), _ticket()
    with pytest.raises(ValidationError, match="not this ticket's prediction"):
        record_tag_label(ticket, high, "add", prediction=_predict(other, high))
    with pytest.raises(ValidationError, match="not this ticket's prediction"):
        record_tag_label(ticket, high, "add", prediction=_predict(ticket, low))
    with pytest.raises(ValidationError, match="add or remove"):
        record_tag_label(ticket, high, "maybe")
    assert not TagLabel.objects.exists()


def test_thresholds_change_with_an_audit_row_and_only_by_admins(admin_ada, agent_alice):
    high = _urgency().tags.get(slug="high")
    set_tag_threshold(high, 0.83, user=admin_ada, reason="fewer false alarms")
    change = TagChange.objects.get(field="threshold")
    assert (change.before, change.after, change.user, change.reason) == ("0.5", "0.83", admin_ada, "fewer false alarms")
    with pytest.raises(ValidationError, match="between 0 and 1"):
        set_tag_threshold(high, float("nan"), user=admin_ada)
    with pytest.raises(PermissionDenied):
        set_tag_threshold(high, 0.1, user=agent_alice)
    assert Tag.objects.get(pk=high.pk).threshold == 0.83


def test_the_database_refuses_a_probability_outside_the_unit_interval():
    ticket, high = _ticket(), _urgency().tags.get(slug="high")
    with pytest.raises(IntegrityError), transaction.atomic():
        _predict(ticket, high, probability=1.2)


def test_the_demo_tag_sets_load_and_loading_again_adds_nothing():
    call_command("load_tag_sets", stdout=open("/dev/null", "w"))
    call_command("load_tag_sets", stdout=open("/dev/null", "w"))
    sets = {s.slug: s for s in TagSet.objects.all()}
    assert set(sets) == {"urgency", "sentiment", "language", "topics"}
    assert sets["urgency"].kind == "single" and sets["topics"].kind == "multi"
    assert sorted(sets["language"].tags.values_list("slug", flat=True)) == ["de", "en", "es", "fr"]
    assert {"security", "data-loss", "outage", "billing-dispute", "legal"} <= set(
        sets["topics"].tags.values_list("slug", flat=True)
    )
    assert Tag.objects.count() == 3 + 3 + 4 + 5
    # Offline scores are never shown raw: every zero-shot demo tag ships a calibration fitted on dev.
    for tag in Tag.objects.exclude(tag_set__method="language"):
        assert tag.calibration["ensemble"]["method"] == "logistic" and tag.calibration["ensemble"]["source"] == "dev"
