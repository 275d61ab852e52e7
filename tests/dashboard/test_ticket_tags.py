"""Tags on the dashboard: the ticket page's panel, one-click add / remove (a label each), the queue's
tag chips, tag filter and urgency sort."""

from __future__ import annotations

import re

import pytest

from tags.models import TagLabel
from tags.services import archive_tag
from tests.dashboard.builders import make_ticket
from tests.tags.builders import make_tag_sets, predict_tags, tag


@pytest.fixture
def tag_sets(db):
    return make_tag_sets()


def _chips(html: str) -> dict[str, str]:
    """data-tag -> data-set ("1" set, "0" not) of the ticket page's tag buttons."""
    return dict(re.findall(r'data-tag="([^"]+)" data-set="([01])"', html))


def _listed(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-ticket-row="(\d+)"', response.content.decode())]


def test_the_ticket_page_shows_tags_with_confidences_and_only_those_above_threshold_as_set(agent_client, tag_sets):
    ticket = make_ticket()
    predict_tags(ticket, {"urgency/high": 0.81, "urgency/low": 0.12, "topics/security": 0.49, "topics/outage": 0.5})
    html = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    chips = _chips(html)
    assert chips["urgency/high"] == "1" and chips["topics/outage"] == "1"  # 0.5 is at the threshold
    assert chips["urgency/low"] == "0" and chips["topics/security"] == "0"
    assert chips["urgency/normal"] == "0"  # never scored: listed, not set
    assert "81%" in html and "49%" in html


def test_one_click_adds_a_tag_as_a_label_answering_the_prediction(agent_client, agent_alice, tag_sets):
    ticket = make_ticket()
    (prediction,) = predict_tags(ticket, {"topics/security": 0.3})
    response = agent_client.post(
        f"/tickets/{ticket.pk}/tags/{tag('topics/security').pk}/", {"action": "add"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert response["HX-Trigger"] == "history-changed"
    assert _chips(response.content.decode())["topics/security"] == "1"
    label = TagLabel.objects.get()
    assert (label.agent, label.action, label.prediction, label.source) == (agent_alice, "add", prediction, "dashboard")
    assert label.created_at is not None
    # And off again: the latest label counts.
    agent_client.post(f"/tickets/{ticket.pk}/tags/{tag('topics/security').pk}/", {"action": "remove"})
    html = agent_client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert _chips(html)["topics/security"] == "0"
    assert TagLabel.objects.count() == 2


def test_adding_a_tag_of_a_single_label_set_removes_the_one_set_before(agent_client, tag_sets):
    ticket = make_ticket()
    predict_tags(ticket, {"urgency/high": 0.2, "urgency/normal": 0.7})
    response = agent_client.post(
        f"/tickets/{ticket.pk}/tags/{tag('urgency/high').pk}/", {"action": "add"}, HTTP_HX_REQUEST="true"
    )
    chips = _chips(response.content.decode())
    assert chips["urgency/high"] == "1" and chips["urgency/normal"] == "0"
    assert sorted(TagLabel.objects.values_list("tag__slug", "action")) == [("high", "add"), ("normal", "remove")]


def test_a_refused_change_stores_nothing_and_says_why(agent_client, admin_ada, tag_sets):
    ticket = make_ticket()
    archived = archive_tag(tag("topics/outage"), user=admin_ada)
    response = agent_client.post(f"/tickets/{ticket.pk}/tags/{archived.pk}/", {"action": "add"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "was archived" in response.content.decode()
    bad = agent_client.post(f"/tickets/{ticket.pk}/tags/{tag('topics/security').pk}/", {"action": "maybe"})
    assert bad.status_code == 302
    assert not TagLabel.objects.exists()
    assert agent_client.post(f"/tickets/{ticket.pk}/tags/999999/", {"action": "add"}).status_code == 404


def test_tag_changes_need_an_agent_a_post_and_a_csrf_token(client, agent_alice, outsider_olga, tag_sets):
    ticket = make_ticket()
    url = f"/tickets/{ticket.pk}/tags/{tag('topics/security').pk}/"
    assert client.post(url, {"action": "add"}).status_code == 302  # to the login page
    client.force_login(outsider_olga)
    assert client.post(url, {"action": "add"}).status_code == 403
    client.force_login(agent_alice)
    assert client.get(url).status_code == 405
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(agent_alice)
    assert strict.post(url, {"action": "add"}).status_code == 403
    assert not TagLabel.objects.exists()


def test_tag_names_are_escaped(agent_client, admin_ada, tag_sets):
    from tags.services import add_tag

    add_tag(tag_sets["topics"], {"name": "<script>alert(1)</script>", "slug": "xss"}, user=admin_ada)
    ticket = make_ticket()
    predict_tags(ticket, {"topics/xss": 0.9})
    for url in (f"/tickets/{ticket.pk}/", "/"):
        html = agent_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_queue_shows_set_tags_filters_by_tag_and_sorts_by_urgency(agent_client, tag_sets):
    calm = make_ticket(subject="calm")
    predict_tags(calm, {"urgency/high": 0.1, "topics/security": 0.2})
    burning = make_ticket(subject="burning")
    predict_tags(burning, {"urgency/high": 0.95, "topics/security": 0.9})
    middling = make_ticket(subject="middling")
    predict_tags(middling, {"urgency/high": 0.6})
    unscored = make_ticket(subject="unscored")

    assert _listed(agent_client.get("/?sort=-urgency")) == [burning.pk, middling.pk, calm.pk, unscored.pk]
    assert _listed(agent_client.get("/?sort=urgency")) == [calm.pk, middling.pk, burning.pk, unscored.pk]
    assert _listed(agent_client.get("/?tag=topics/security")) == [burning.pk]
    assert _listed(agent_client.get("/?tag=nope/none")) == []

    # An agent's label outranks the prediction, in the filter and in the sort.
    TagLabel.objects.create(ticket=calm, tag=tag("topics/security"), action="add")
    TagLabel.objects.create(ticket=burning, tag=tag("topics/security"), action="remove")
    TagLabel.objects.create(ticket=calm, tag=tag("urgency/high"), action="add")
    assert _listed(agent_client.get("/?tag=topics/security")) == [calm.pk]
    assert _listed(agent_client.get("/?sort=-urgency"))[0] == calm.pk

    html = agent_client.get("/").content.decode()
    row = html[html.index(f'data-ticket-row="{middling.pk}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-tag="urgency/high"' in row and "60%" in row
    calm_row = html[html.index(f'data-ticket-row="{calm.pk}"') :]
    assert 'data-tag="urgency/low"' not in calm_row[: calm_row.index("</tr>")]
    assert '<option value="topics/security">' in html


def test_next_ticket_walks_the_urgency_order(agent_client, tag_sets):
    first, second = make_ticket(subject="a"), make_ticket(subject="b")
    predict_tags(first, {"urgency/high": 0.9})
    predict_tags(second, {"urgency/high": 0.4})
    response = agent_client.get(f"/tickets/{first.pk}/next/?sort=-urgency")
    assert response["Location"].startswith(f"/tickets/{second.pk}/")


def test_the_queue_reads_tags_without_a_query_per_ticket(agent_client, tag_sets, django_assert_max_num_queries):
    def fill(n: int) -> None:
        for i in range(n):
            t = make_ticket(subject=f"t{i}")
            predict_tags(t, {"urgency/high": 0.7, "topics/security": 0.8, "topics/outage": 0.1})
            TagLabel.objects.create(ticket=t, tag=tag("topics/outage"), action="add")

    fill(2)
    with django_assert_max_num_queries(40) as few:
        agent_client.get("/?sort=-urgency")
    fill(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = agent_client.get("/?sort=-urgency").content.decode()
    assert html.count('data-tag="topics/outage"') == 22
