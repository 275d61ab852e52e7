"""Routing one ticket end to end in-process: claim, score with a real model, decide, store, signal."""

from __future__ import annotations

import pytest
from django.utils import timezone

from mlops.models import ModelVersion
from triage import routing
from triage.models import Prediction, Team, Ticket
from triage.signals import ticket_decided

pytestmark = pytest.mark.django_db

BILLING_TEXT = {"subject": "Charged twice", "body": "I was charged twice for my subscription this month."}


def make_ticket(**fields) -> Ticket:
    return Ticket.objects.create(**{**BILLING_TEXT, **fields})


def team(slug: str) -> Team:
    return Team(slug=slug, name=slug, mode=Team.Mode.AUTO, threshold=0.8)


@pytest.mark.parametrize(
    ("scores", "mode", "margin", "decision", "chosen"),
    [
        ({"a": 0.85, "b": 0.15}, Team.Mode.AUTO, 0.1, Prediction.Decision.AUTO_ROUTED, "a"),
        ({"a": 0.80, "b": 0.20}, Team.Mode.AUTO, 0.1, Prediction.Decision.AUTO_ROUTED, "a"),  # at the threshold
        ({"a": 0.70, "b": 0.30}, Team.Mode.AUTO, 0.1, Prediction.Decision.SUGGESTED, "a"),  # below, clear leader
        ({"a": 0.95, "b": 0.05}, Team.Mode.SUGGEST, 0.1, Prediction.Decision.SUGGESTED, "a"),  # suggest-only team
        ({"a": 0.52, "b": 0.48}, Team.Mode.AUTO, 0.1, Prediction.Decision.ABSTAINED, None),  # no clear leader
        ({"a": 0.52, "b": 0.48}, Team.Mode.SUGGEST, 0.1, Prediction.Decision.ABSTAINED, None),
    ],
)
def test_decisions_follow_mode_threshold_and_margin(scores, mode, margin, decision, chosen):
    teams = {"a": team("a"), "b": team("b")}
    teams["a"].mode = mode
    result = routing.decide(scores, teams, margin=margin)
    assert result.decision == decision
    assert (result.team.slug if result.team else None) == chosen
    assert result.confidence == scores["a"] and result.threshold == 0.8


def test_a_new_ticket_is_auto_routed_with_its_prediction_and_model_version(embedding_routing, teams):
    ticket = make_ticket()
    prediction = routing.route_ticket(ticket.pk)
    ticket.refresh_from_db()
    assert prediction.decision == Prediction.Decision.AUTO_ROUTED
    assert (ticket.status, ticket.team) == (Ticket.Status.ROUTED, teams["billing"])
    assert prediction.chosen_team == teams["billing"]
    assert set(prediction.scores) == set(prediction.raw_scores) == set(teams)
    assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert prediction.confidence == max(prediction.scores.values())
    assert prediction.threshold == 0.5 and prediction.latency_ms > 0
    version = prediction.model_version
    assert (prediction.scorer, version.scorer, version.status) == ("embedding", "embedding", "champion")
    assert version.trigger == "bootstrap" and version.config["scorer"] == "embedding"
    assert ticket.routing_attempts == 1 and ticket.routing_error == ""


def test_running_it_again_adds_no_second_prediction(embedding_routing, teams):
    ticket = make_ticket()
    first = routing.route_ticket(ticket.pk)
    assert routing.route_ticket(ticket.pk) is None
    assert list(Prediction.objects.filter(ticket=ticket)) == [first]


def test_a_redelivered_run_after_a_crash_claims_the_ticket_again(embedding_routing, teams):
    ticket = make_ticket(status=Ticket.Status.ROUTING, routing_attempts=1, routing_started_at=timezone.now())
    prediction = routing.route_ticket(ticket.pk)
    ticket.refresh_from_db()
    assert prediction is not None and ticket.routing_attempts == 2 and ticket.status == Ticket.Status.ROUTED


def test_below_the_threshold_a_clear_leader_is_suggested_and_waits_for_a_person(embedding_routing, teams, settings):
    Team.objects.filter(slug="billing").update(threshold=1.0)
    settings.TRIAGE_SUGGEST_MARGIN = 0.0
    ticket = make_ticket()
    prediction = routing.route_ticket(ticket.pk)
    ticket.refresh_from_db()
    assert prediction.decision == Prediction.Decision.SUGGESTED
    assert prediction.chosen_team == teams["billing"] and prediction.threshold == 1.0
    assert (ticket.status, ticket.team) == (Ticket.Status.NEEDS_TRIAGE, None)


def test_without_a_clear_leader_the_router_abstains_and_shows_no_team(embedding_routing, teams, settings):
    Team.objects.update(threshold=1.0)
    settings.TRIAGE_SUGGEST_MARGIN = 1.0
    ticket = make_ticket()
    prediction = routing.route_ticket(ticket.pk)
    ticket.refresh_from_db()
    assert prediction.decision == Prediction.Decision.ABSTAINED
    assert prediction.chosen_team is None and prediction.confidence > 0
    assert (ticket.status, ticket.team) == (Ticket.Status.NEEDS_TRIAGE, None)


def test_the_versions_temperature_calibrates_the_stored_scores(embedding_routing, teams):
    first = routing.route_ticket(make_ticket().pk)
    version = first.model_version
    version.calibration = {"method": "temperature", "temperature": 10.0}
    version.save(update_fields=["calibration"])
    second = routing.route_ticket(make_ticket().pk)
    assert second.raw_scores == pytest.approx(first.raw_scores, abs=1e-6)
    assert max(second.scores.values()) < max(second.raw_scores.values())  # softer with T = 10


def test_teams_that_are_off_or_inactive_are_not_scored(embedding_routing, teams):
    Team.objects.filter(slug="billing").update(mode=Team.Mode.OFF)
    Team.objects.filter(slug="delivery").update(active=False)
    prediction = routing.route_ticket(make_ticket().pk)
    assert set(prediction.scores) == {"sign-in"}


def test_with_no_team_to_route_to_the_ticket_goes_to_needs_triage_without_a_guess(embedding_routing, db):
    ticket = make_ticket()
    assert routing.route_ticket(ticket.pk) is None
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.NEEDS_TRIAGE
    assert "no active team" in ticket.routing_error
    assert not Prediction.objects.exists()


def test_after_too_many_attempts_the_ticket_goes_to_needs_triage(embedding_routing, teams, settings):
    settings.TRIAGE_MAX_ROUTING_ATTEMPTS = 3
    ticket = make_ticket(status=Ticket.Status.ROUTING, routing_attempts=3)
    assert routing.route_ticket(ticket.pk) is None
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.NEEDS_TRIAGE and "gave up after 3" in ticket.routing_error


def test_a_ticket_a_person_already_routed_is_left_alone(embedding_routing, teams):
    ticket = make_ticket(status=Ticket.Status.ROUTED, team=teams["delivery"])
    assert routing.route_ticket(ticket.pk) is None
    ticket.refresh_from_db()
    assert ticket.team == teams["delivery"] and not Prediction.objects.exists()


def test_ticket_decided_is_sent_once_the_decision_commits(embedding_routing, teams, django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, ticket, prediction, **kwargs):
        received.append((ticket.pk, prediction.pk, prediction.decision))

    ticket_decided.connect(receiver)
    try:
        ticket = make_ticket()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            prediction = routing.route_ticket(ticket.pk)
        assert received == []
        for callback in callbacks:
            callback()
    finally:
        ticket_decided.disconnect(receiver)
    assert received == [(ticket.pk, prediction.pk, Prediction.Decision.AUTO_ROUTED)]


def test_when_nli_cannot_load_the_prediction_records_the_scorer_that_routed(settings, teams, tmp_path, caplog):
    settings.TRIAGE_ROUTING_SCORER = "auto"
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "no-nli-here")
    prediction = routing.route_ticket(make_ticket().pk)
    assert prediction.scorer == "ensemble" == prediction.model_version.scorer
    assert prediction.chosen_team == teams["billing"]
    assert "could not be loaded" in caplog.text and "routing with ensemble" in caplog.text


def test_a_change_of_scorer_setting_makes_a_new_zero_shot_champion(embedding_routing, teams, settings):
    first = routing.route_ticket(make_ticket().pk).model_version
    settings.TRIAGE_ROUTING_SCORER = "cross-encoder"
    second = routing.route_ticket(make_ticket().pk).model_version
    first.refresh_from_db()
    assert (first.status, second.status, second.scorer) == ("retired", "champion", "cross-encoder")
    assert ModelVersion.objects.filter(status="champion").count() == 1
