"""Descriptions an admin can trust: the team page, its audited save, the preview and the overlap warnings."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from learning.descriptions import (
    CONFUSION_MIN_TICKETS,
    confused_pairs,
    preview_description,
    similar_descriptions,
)
from mlops.inference.scorers import ClassSpec
from mlops.models import ModelVersion
from tests.dashboard.builders import decide, make_ticket
from triage import routing
from triage.models import Team, TeamChange
from triage.tasks import start_zero_shot_version_task
from triage.team_services import EXAMPLES_MAX, describe_team

DESCRIBED = {
    "billing": ("Billing", "Invoices, subscription charges, double charges on a card and payment failures."),
    "orders": ("Orders", "Where an order is, delivery dates, parcels lost or late in transit, tracking numbers."),
    "account": ("Account", "Signing in, passwords, two-factor codes and changing the e-mail of an account."),
}
PARCEL_TICKETS = [
    ("Parcel never arrived", "My parcel was supposed to come on Monday and it never arrived. Tracking says delivered."),
    ("Where is my package", "The courier lost my package in transit, can you find out where it is?"),
]
PASSWORD_TICKETS = [
    ("Cannot log in", "I forgot my password and the reset e-mail never comes."),
    ("2FA code", "The two-factor code on my phone is not accepted when I sign in."),
]


@pytest.fixture
def described(db, settings):
    settings.TRIAGE_ROUTING_SCORER = "embedding"
    return {
        slug: Team.objects.create(slug=slug, name=name, description=text, mode=Team.Mode.AUTO)
        for slug, (name, text) in DESCRIBED.items()
    }


# --- The service --------------------------------------------------------------------------------------------
def test_describing_a_team_saves_the_texts_and_audits_each_changed_field(described, admin_ada):
    team = described["account"]
    changes = describe_team(
        team,
        description="  Sign-in problems and account settings.  ",
        examples=["I cannot log in", " ", "I cannot log in", "Change my e-mail"],
        user=admin_ada,
        reason="sharper",
    )
    team.refresh_from_db()
    assert team.description == "Sign-in problems and account settings."
    assert team.examples == ["I cannot log in", "Change my e-mail"]  # blanks and repeats dropped
    assert [(c.field, c.user, c.reason) for c in changes] == [
        ("description", admin_ada, "sharper"),
        ("examples", admin_ada, "sharper"),
    ]
    assert changes[0].before == DESCRIBED["account"][1]
    assert TeamChange.objects.get(field="examples").after == "I cannot log in\nChange my e-mail"
    # The same texts again are no change: no audit row, no new model version queued.
    assert describe_team(team, description=team.description, examples=team.examples, user=admin_ada) == []


def test_bad_texts_are_refused_with_nothing_saved(described, admin_ada):
    team = described["billing"]
    with pytest.raises(ValidationError, match="at most"):
        describe_team(team, description="x", examples=[f"e{i}" for i in range(EXAMPLES_MAX + 1)], user=admin_ada)
    with pytest.raises(ValidationError, match="limit is 2000"):
        describe_team(team, description="y" * 2001, user=admin_ada)
    with pytest.raises(ValidationError, match="list of texts"):
        describe_team(team, description="z", examples="one string", user=admin_ada)
    team.refresh_from_db()
    assert team.description == DESCRIBED["billing"][1] and not TeamChange.objects.exists()


def test_agents_cannot_describe_teams(described, agent_alice):
    with pytest.raises(PermissionDenied):
        describe_team(described["billing"], description="anything", user=agent_alice)
    assert not TeamChange.objects.exists()


def test_a_saved_change_queues_a_new_zero_shot_version_after_commit(
    described, admin_ada, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        describe_team(described["orders"], description="Deliveries.", user=admin_ada)
    # The other callback is the learning loop's drift check (learning.selftrain.on_team_saved).
    assert [getattr(c, "__name__", "") for c in callbacks].count("_start_zero_shot_version") == 1
    with django_capture_on_commit_callbacks() as callbacks:
        describe_team(described["orders"], description="Deliveries.", user=admin_ada)
    assert callbacks == []


# --- A changed description is a new model version --------------------------------------------------------
def test_a_changed_description_makes_a_new_zero_shot_champion_that_routes_the_next_ticket(described, admin_ada):
    first = routing.route_ticket(make_ticket(*PARCEL_TICKETS[0]).pk).model_version
    first.calibration = {"temperature": 1.7}
    first.save(update_fields=["calibration"])
    assert first.status == "champion" and "-t" in first.version
    describe_team(described["orders"], description="Parcels and deliveries.", user=admin_ada)
    # The task body (what the inference worker runs on commit) makes and promotes the new version.
    label = start_zero_shot_version_task.apply().get()
    second = ModelVersion.objects.get(version=label)
    first.refresh_from_db()
    assert (first.status, second.status, second.trigger) == ("retired", "champion", "teams")
    assert second.calibration == {"temperature": 1.7} and second.config["calibration_from"] == first.version
    assert second.config["teams"]["slugs"] == ["account", "billing", "orders"]
    assert routing.route_ticket(make_ticket(*PARCEL_TICKETS[1]).pk).model_version == second


def test_example_tickets_reach_the_scorer(described, admin_ada):
    describe_team(described["account"], description="Accounts.", examples=["My 2FA code fails"], user=admin_ada)
    classes = routing.team_classes(routing.routable_teams())
    assert [c.examples for c in classes if c.slug == "account"] == [("My 2FA code fails",)]


# --- Preview and overlap warnings (the real embedding scorer) ---------------------------------------------
def test_the_preview_lists_the_tickets_an_edit_would_bring_and_take_away(described):
    parcels = [make_ticket(subject=s, body=b) for s, b in PARCEL_TICKETS]
    passwords = [make_ticket(subject=s, body=b) for s, b in PASSWORD_TICKETS]
    seen: list[tuple[int, int]] = []
    # An admin mistakenly describes Account as the delivery team.
    preview = preview_description(
        described["account"],
        "Parcels lost in transit, couriers and packages that never arrived.",
        ["Where is my parcel?"],
        progress=lambda done, total: seen.append((done, total)),
    )
    assert preview["tickets"] == 4 and seen[-1] == (4, 4)
    assert {t["id"] for t in preview["gained"]} == {t.pk for t in parcels}
    assert {t["other"] for t in preview["gained"]} == {"Orders"}
    # The 2FA ticket leaves Account for another team ("forgot my password" still reads as Account).
    assert passwords[1].pk in {t["id"] for t in preview["lost"]} <= {t.pk for t in passwords}
    assert preview["goes_now"] == 2
    assert preview["would_go"] == preview["goes_now"] + len(preview["gained"]) - len(preview["lost"])
    # Nothing was saved: a preview only reads.
    assert Team.objects.get(slug="account").description == DESCRIBED["account"][1]


def test_two_teams_described_alike_are_flagged_and_distinct_ones_are_not(described):
    classes = routing.team_classes(routing.routable_teams())
    assert similar_descriptions(classes) == []
    twin = ClassSpec("deliveries", "Deliveries", DESCRIBED["orders"][1])
    pairs = similar_descriptions([*classes, twin])
    assert [p["slugs"] for p in pairs] == [["orders", "deliveries"]]
    assert pairs[0]["similarity"] >= 0.85


def test_teams_the_router_keeps_hesitating_between_are_flagged(described):
    for n in range(CONFUSION_MIN_TICKETS):
        decide(make_ticket(subject=f"charge {n}"), {"billing": 0.46, "orders": 0.44, "account": 0.10})
    for n in range(8):
        decide(make_ticket(subject=f"login {n}"), {"account": 0.9, "billing": 0.05, "orders": 0.05})
    pairs = confused_pairs()
    assert [(p["slugs"], p["tickets"]) for p in pairs] == [(["billing", "orders"], CONFUSION_MIN_TICKETS)]
    assert confused_pairs(only="account") == []


# --- The page -------------------------------------------------------------------------------------------------
def test_admins_edit_the_description_on_the_team_page(described, admin_client_ada):
    page = admin_client_ada.get("/models/teams/orders/")
    assert page.status_code == 200 and DESCRIBED["orders"][1] in page.content.decode()
    response = admin_client_ada.post(
        "/models/teams/orders/",
        {"description": "Deliveries and parcels.", "examples": "Where is my parcel?\n\nIt never came", "reason": "r"},
    )
    assert response.status_code == 302 and response["Location"] == "/models/teams/orders/"
    team = Team.objects.get(slug="orders")
    assert (team.description, team.examples) == ("Deliveries and parcels.", ["Where is my parcel?", "It never came"])
    page = admin_client_ada.get("/models/teams/orders/").content.decode()
    assert "new zero-shot model version" in page and page.count('data-testid="change"') == 2


def test_a_bad_edit_is_shown_again_with_the_reason_and_nothing_saved(described, admin_client_ada):
    examples = "\n".join(f"example {i}" for i in range(EXAMPLES_MAX + 2))
    response = admin_client_ada.post("/models/teams/orders/", {"description": "New words", "examples": examples})
    assert response.status_code == 400
    assert "at most" in response.content.decode() and "New words" in response.content.decode()
    assert Team.objects.get(slug="orders").description == DESCRIBED["orders"][1]


def test_agents_and_visitors_cannot_open_the_team_page(described, client, agent_alice):
    assert client.get("/models/teams/orders/").status_code == 302
    client.force_login(agent_alice)
    assert client.get("/models/teams/orders/").status_code == 403
    assert client.post("/models/teams/orders/", {"description": "x"}).status_code == 403
    assert client.post("/models/teams/orders/preview/", {"description": "x"}).status_code == 403
    assert Team.objects.get(slug="orders").description == DESCRIBED["orders"][1]


def test_the_page_warns_about_teams_the_router_confuses(described, admin_client_ada):
    for n in range(CONFUSION_MIN_TICKETS):
        decide(make_ticket(subject=f"charge {n}"), {"billing": 0.5, "orders": 0.45, "account": 0.05})
    page = admin_client_ada.get("/models/teams/orders/").content.decode()
    assert len(re.findall('data-testid="confused-pair"', page)) == 1 and "Billing" in page
    assert 'data-testid="confused-pair"' not in admin_client_ada.get("/models/teams/account/").content.decode()


def test_a_preview_of_bad_texts_answers_why_without_queueing(described, admin_client_ada):
    response = admin_client_ada.post("/models/teams/orders/preview/", {"description": "d" * 2001})
    assert response.status_code == 400 and "limit is 2000" in response.content.decode()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_preview_runs_on_a_worker_and_the_page_polls_it_to_the_end(admin_client_ada, settings):
    from tests.workers import celery_worker, purge_queues, wait_for

    for slug, (name, text) in DESCRIBED.items():
        Team.objects.create(slug=slug, name=name, description=text)
    parcel = make_ticket(*PARCEL_TICKETS[0])
    purge_queues()
    with celery_worker(queues="inference", extra_env={"TRIAGE_ROUTING_SCORER": "embedding", "TRIAGE_WARM_MODELS": "0"}):
        started = admin_client_ada.post(
            "/models/teams/account/preview/", {"description": "Parcels that never arrived.", "examples": ""}
        )
        assert started.status_code == 200
        poll = re.search(r'hx-get="([^"]+)"', started.content.decode()).group(1)
        pages: list[str] = []

        def finished() -> bool:
            pages.append(admin_client_ada.get(poll).content.decode())
            return 'data-state="SUCCESS"' in pages[-1]

        wait_for(finished, timeout=300, message="the preview to finish")
    assert "would now go to Account" in pages[-1] and f"#{parcel.pk} {parcel.subject}" in pages[-1]
    assert "hx-get" not in pages[-1]  # finished: the fragment stops polling
