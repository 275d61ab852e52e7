"""Training runs are an outbox (``learning.runs``): the Retrain and Self-train buttons keep their request
while Redis is down, and the sweeper sends it once Redis is back. Real embedded Redis, killed with SIGKILL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from learning.runs import sweep_runs
from mlops.models import TrainingRun
from tests.faults import embedded_servers, redis_down
from tests.workers import purge_queues
from triage.work import queue_length

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not embedded_servers(), reason="kills the embedded Redis"),
]


def sweep_later(seconds: int = 30) -> dict[str, int]:
    """A sweep as beat runs it, late enough that the unsent run is past its grace period."""
    return sweep_runs(now=timezone.now() + timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("button", "scorer", "queued"),
    [
        ("learning:self_train", "self-trained", "Self-trained build self-trained-1 queued."),
        ("learning:retrain", "setfit", "Training setfit-1 queued."),
    ],
)
def test_a_button_pressed_while_redis_is_down_keeps_the_request_and_the_sweeper_sends_it(
    admin_client_ada, button, scorer, queued
):
    purge_queues()
    with redis_down():
        response = admin_client_ada.post(reverse(button), follow=True)
        assert response.status_code == 200 and queued in response.content.decode()
        run = TrainingRun.objects.select_related("model_version").get()
        assert (run.state, run.sent_at, run.sends, run.model_version.scorer) == ("queued", None, 0, scorer)
        assert sweep_later() == {"sent": 0, "resent": 0}  # still down: nothing lost, nothing raised
    assert sweep_later() == {"sent": 1, "resent": 0}
    run.refresh_from_db()
    assert run.sends == 1 and run.sent_at is not None and queue_length("training") == 1
    # Sent once: while its message waits in the queue, later sweeps leave it alone.
    assert sweep_later(3600) == {"sent": 0, "resent": 0} and queue_length("training") == 1
    purge_queues()


def test_a_run_whose_message_the_broker_lost_is_sent_again_once_overdue(admin_client_ada, settings):
    purge_queues()
    admin_client_ada.post(reverse("learning:self_train"))
    run = TrainingRun.objects.get()
    assert run.sends == 1 and queue_length("training") == 1
    purge_queues()  # Redis lost the message (e.g. restarted without its data)
    assert sweep_later(settings.TRIAGE_STUCK_AFTER_SECONDS - 60) == {"sent": 0, "resent": 0}
    assert sweep_later(settings.TRIAGE_STUCK_AFTER_SECONDS + 60) == {"sent": 0, "resent": 1}
    run.refresh_from_db()
    assert run.sends == 2 and queue_length("training") == 1
    purge_queues()
