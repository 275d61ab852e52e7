"""When a self-trained version is built, and how a build is requested.

A self-trained version is a head fitted on the last ``TRIAGE_SELFTRAIN_WINDOW`` received tickets
(no labels; ``learning.selftrain_build`` runs it on the ``training`` queue, ``mlops.selftraining``
is the algorithm). It is built:

* every ``TRIAGE_SELFTRAIN_EVERY`` new tickets since the last build (``check_selftrain_trigger``,
  checked by beat with the retrain trigger);
* when an admin presses *Self-train now* on the registry page;
* when the teams drift: a team added, switched off or described anew since the last build (the
  build was fitted on other texts). A ``Team`` save runs ``on_team_saved`` after commit: it starts
  the zero-shot version of the new teams on an inference worker for a new team (an edited
  description already does, ``triage.team_services.describe_team``) and queues the rebuild. Routing
  itself switches from a stale self-trained champion to zero-shot at once
  (``mlops.registry.fitted_on_other_teams``).

Never while a version trained on agents' labels (SetFit) is the champion: it replaced both the
zero-shot and the self-trained version. Requests share the retraining queue's lock
(``learning.trigger.run_queue_lock``): at most one run of either kind is queued or running, and two
workers never start two builds. The run is an outbox row (``learning.runs``): a request made while
Redis is down is sent when it is back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from mlops.inference.selftrain import TEACHER_EMBEDDER
from mlops.models import ModelVersion
from mlops.registry import SELF_TRAINED_SCORER as SCORER
from mlops.registry import TRAINED_SCORER, classes_fingerprint, fitted_on_other_teams
from triage.models import Ticket
from triage.routing import routable_teams, team_classes

from .trigger import TrainingInProgress, active_run, queue_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelfTrainCheck:
    fire: bool
    reason: str
    new_tickets: int
    trigger: str = "tickets"  # or "teams": the teams changed since the last build


def last_self_training() -> ModelVersion | None:
    """The latest self-trained build requested, whatever came of it: new tickets are counted from it."""
    return ModelVersion.objects.filter(scorer=SCORER).order_by("-created_at", "-pk").first()


def new_tickets_since(version: ModelVersion | None) -> int:
    tickets = Ticket.objects.all()
    if version is not None:
        tickets = tickets.filter(created_at__gt=version.created_at)
    return tickets.count()


def labels_serve() -> ModelVersion | None:
    """The champion when it was trained on agents' labels (then self-training has nothing to add)."""
    champion = ModelVersion.objects.champion()
    return champion if champion is not None and champion.scorer == TRAINED_SCORER else None


def check_selftrain_trigger() -> SelfTrainCheck:
    """Whether a self-trained build is due now, and why (or why not)."""
    last = last_self_training()
    new = new_tickets_since(last)
    every = settings.TRIAGE_SELFTRAIN_EVERY
    trained = labels_serve()
    if trained is not None:
        return SelfTrainCheck(False, f"{trained.version}, trained on agents' labels, is the champion", new)
    classes = team_classes(routable_teams())
    if len(classes) < 2:
        return SelfTrainCheck(False, "fewer than two routable teams: there is nothing to classify", new)
    drifted = last is not None and _built_on_other_teams(last, classes)
    if not drifted and new < every:
        return SelfTrainCheck(False, f"{new} new tickets since the last self-trained build; {every} needed", new)
    run = active_run()
    if run is not None:
        return SelfTrainCheck(False, f"training run #{run.pk} is already {run.state}", new)
    if drifted:
        return SelfTrainCheck(True, f"the teams changed since {last.version} was built", new, trigger="teams")
    return SelfTrainCheck(True, f"{new} new tickets since the last self-trained build (every {every})", new)


def _built_on_other_teams(version: ModelVersion, classes) -> bool:
    # A build that has not read the teams yet (queued) reads today's when it runs.
    return bool((version.config.get("teams") or {}).get("fingerprint")) and fitted_on_other_teams(version, classes)


def request_self_training(*, trigger: str, user=None, enqueue: bool = True) -> ModelVersion:
    """Queue a self-trained build: a ``ModelVersion`` (status training) and its ``TrainingRun`` (queued).

    Raises ``TrainingInProgress`` when a run (either kind) is queued or running; the task is sent
    after commit (``enqueue=False``: the caller runs ``learning.selftrain_build.run_self_training``).

    >>> request_self_training(trigger="manual", user=ada).training_run.state   # doctest: +SKIP
    'queued'
    """
    # What the build will use is fixed now: a settings change cannot alter a queued build.
    version = queue_run(
        SCORER,
        model_ref=TEACHER_EMBEDDER,
        trigger=trigger,
        user=user,
        enqueue=enqueue,
        config={
            "window": settings.TRIAGE_SELFTRAIN_WINDOW,
            "min_tickets_per_team": settings.TRIAGE_SELFTRAIN_MIN_TICKETS_PER_TEAM,
            "guards": {
                "sample": settings.TRIAGE_SELFTRAIN_GUARD_SAMPLE,
                "confident_share": settings.TRIAGE_SELFTRAIN_CONFIDENT_SHARE,
                "min_agreement": settings.TRIAGE_SELFTRAIN_MIN_AGREEMENT,
                "max_volume_loss": settings.TRIAGE_SELFTRAIN_MAX_VOLUME_LOSS,
                "label_tolerance": settings.TRIAGE_SELFTRAIN_LABEL_TOLERANCE,
            },
        },
    )
    logger.info("self-trained build %s requested (%s) by %s", version.version, trigger, user or "the system")
    return version


def request_if_due() -> ModelVersion | None:
    """Queue a build when ``check_selftrain_trigger`` says so (beat, and after a team changed)."""
    check = check_selftrain_trigger()
    if not check.fire:
        logger.info("self-train trigger: not now (%s)", check.reason)
        return None
    try:
        version = request_self_training(trigger=check.trigger)
    except TrainingInProgress as exc:  # another process queued one meanwhile; beat looks again
        logger.info("self-train trigger: not now (%s)", exc)
        return None
    logger.info("self-train trigger fired (%s): queued %s", check.reason, version.version)
    return version


def on_team_saved(*, created: bool) -> None:
    """After a team was saved (committed): drift. Starts the new zero-shot version at once for a new
    team, and queues a self-trained rebuild when the last build was fitted on other teams."""
    from config.celery import send_or_defer
    from triage.tasks import start_zero_shot_version_task

    champion = ModelVersion.objects.champion()
    if created and champion is not None and champion.scorer != TRAINED_SCORER:
        classes = team_classes(routable_teams())
        if (champion.config.get("teams") or {}).get("fingerprint") != classes_fingerprint(classes):
            send_or_defer(start_zero_shot_version_task)  # routing makes it on its next ticket if this is lost
    last = last_self_training()
    if last is not None and _built_on_other_teams(last, team_classes(routable_teams())):
        request_if_due()
