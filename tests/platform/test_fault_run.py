"""Tickets through the API while the worker is killed, Redis is killed and Postgres restarts (issue #15).

Real parts throughout: gunicorn serving the API with persistent database connections, a real Celery
worker with beat (the sweeper), the embedded Redis and Postgres. The clients send no Idempotency-Key
and no external id, so a ticket stored twice would show; they send a request again only after a 503
(the server says nothing was stored) or a refused connection, as a careful client does.

Four phases of N/4 tickets each, four clients at a time:

A. the worker runs; right after the last answer its whole process group is killed with SIGKILL
   (tasks it had reserved stay in Redis' unacked set) and a fresh worker is started;
B. tickets arrive while the fresh worker starts;
C. Redis is killed with SIGKILL: every ticket must still be answered 201 (no 5xx), its work waiting in
   Postgres; Redis is started again on its append-only file;
D. Postgres restarts (immediate, i.e. crash recovery) while tickets arrive: 503 + Retry-After while it
   is down, then the clients' second tries succeed.

Then every acknowledged ticket must be stored once, routed or in needs-triage, with its article
suggestions, and its work done, within FINAL_WITHIN_SECONDS of the last answer.

N is 40 here (``TRIAGE_FAULT_TICKETS`` sets another; ``bench/fault_run.py`` runs 1,000 outside CI).
``TRIAGE_FAULT_REPORT=<path>`` writes the figures as JSON: acknowledged, stored, duplicates, seconds to
the final state, the longest inference queue seen, messages sent (routing + suggestions, first sends
and re-sends).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from django.db import connections
from django.db.models import Count, Sum

from api.models import ApiToken
from config.workers import INFERENCE_QUEUES
from search.models import Article, Suggestion
from search.services import upsert_article
from tests.faults import embedded_servers, http, kill_redis, restart_postgres, start_redis, web_server
from tests.routing.conftest import TEAMS
from tests.search.conftest import KB
from tests.workers import celery_worker, purge_queues, wait_for
from triage.models import Team, Ticket, TicketJob
from triage.work import queue_length

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(not embedded_servers(), reason="kills the embedded Redis and restarts the embedded Postgres"),
]

N = int(os.environ.get("TRIAGE_FAULT_TICKETS", "40"))
CLIENTS = 4
# 340 s for the 40 tickets of CI on a shared 2-core machine (they took 158 s there); bench/fault_run.py
# allows more for 1,000.
FINAL_WITHIN_SECONDS = int(os.environ.get("TRIAGE_FAULT_FINAL_WITHIN", str(300 + N)))
# Short deadlines so the sweeper acts within the test; the visibility timeout follows (60 + 60 + 60 s).
WORKER_ENV = {
    "TRIAGE_ROUTING_SCORER": "embedding",
    "TRIAGE_WARM_MODELS": "0",
    "TRIAGE_SWEEP_SECONDS": "5",
    "TRIAGE_STUCK_AFTER_SECONDS": "20",
    "TRIAGE_INFERENCE_TIME_LIMIT": "60",
}
TEXTS = [
    ("Charged twice", "I was charged twice for my subscription this month, please refund one."),
    ("Refund", "I want a refund for the renewal I did not ask for."),
    ("Cannot log in", "I forgot my password and the reset email never arrives."),
    ("Locked out", "My account is locked after too many sign-in attempts."),
    ("Parcel late", "My order has not arrived and tracking has not moved for a week."),
    ("Wrong address", "The parcel was delivered to the wrong address."),
]
FINAL = (Ticket.Status.ROUTED, Ticket.Status.NEEDS_TRIAGE)


class Clients:
    """Sends tickets, retrying a 503 or a refused connection; records every answer."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.headers = url + "/api/tickets/", {"Authorization": f"Bearer {token}"}
        self.answers: list[tuple[str, int]] = []  # (phase, status); 0 = no connection
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()

    def send(self, phase: str, n: int) -> None:
        subject, body = TEXTS[n % len(TEXTS)]
        data = {"subject": f"fault-run {n:05d}: {subject}", "body": body, "channel": "api"}
        for _attempt in range(120):
            try:
                reply = http("POST", self.url, data=data, headers=self.headers, timeout=60)
                status = reply.status
            except OSError:
                status = 0
            with self.lock:
                self.answers.append((phase, status))
                if status == 201:
                    self.acknowledged.append(data["subject"])
                    return
            if status not in (0, 503):
                return  # anything else is a failure the assertions report
            time.sleep(0.5)

    def phase(self, name: str, numbers: range) -> None:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda n: self.send(name, n), numbers))


class QueueWatch(threading.Thread):
    """The longest the inference queue got, polled every quarter second (Redis may be down)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.longest, self.stopped = 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.longest = max(self.longest, queue_length("inference"))
            except Exception:  # noqa: BLE001 (Redis is down on purpose for a while)
                pass
            self.stopped.wait(0.25)


def setup_data(agent) -> str:
    for slug, name, description in TEAMS:
        Team.objects.create(slug=slug, name=name, description=description, mode=Team.Mode.AUTO, threshold=0.5)
    for row in KB:
        upsert_article({k: v for k, v in row.items() if k != "team"})
    _, secret = ApiToken.issue(agent, name="fault-run", scope=ApiToken.Scope.AGENT)
    return secret


def forget_connections() -> None:
    for conn in connections.all(initialized_only=True):
        conn.close()


def unacked_in_redis() -> int:
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL).hlen("unacked")


def final_state(subjects: list[str]) -> dict[str, int]:
    tickets = Ticket.objects.filter(subject__startswith="fault-run ")
    return {
        "stored": tickets.count(),
        "final": tickets.filter(status__in=FINAL).count(),
        "with_suggestions": tickets.filter(pk__in=Suggestion.objects.values("ticket")).count(),
        "open_jobs": TicketJob.objects.filter(ticket__in=tickets, done_at__isnull=True).count(),
    }


def test_acknowledged_tickets_survive_a_killed_worker_a_killed_redis_and_a_postgres_restart(agent_alice):
    purge_queues()
    token = setup_data(agent_alice)
    web_env = {
        "TRIAGE_STUCK_AFTER_SECONDS": WORKER_ENV["TRIAGE_STUCK_AFTER_SECONDS"],
        "API_THROTTLE_AGENT": "100000/min",
    }
    with ExitStack() as stack:
        web = stack.enter_context(web_server(workers=2, extra_env=web_env))
        first = stack.enter_context(celery_worker(INFERENCE_QUEUES, 1, WORKER_ENV, beat=True))
        wait_for(lambda: Article.objects.searchable().count() == len(KB), timeout=300, message="articles indexed")
        clients, watch = Clients(web.url, token), QueueWatch()
        watch.start()
        quarter = N // 4
        started = time.monotonic()

        clients.phase("A", range(0, quarter))
        os.killpg(first.process.pid, signal.SIGKILL)  # main process, pool and beat at once
        first.process.wait(30)
        replacement: list = []
        starting = threading.Thread(
            target=lambda: replacement.append(
                stack.enter_context(celery_worker(INFERENCE_QUEUES, 1, WORKER_ENV, beat=True))
            )
        )
        starting.start()
        clients.phase("B", range(quarter, 2 * quarter))
        starting.join()
        assert replacement, "the replacement worker did not start"

        kill_redis()
        clients.phase("C", range(2 * quarter, 3 * quarter))
        start_redis()

        restarting = threading.Thread(target=restart_postgres)
        restarting.start()
        clients.phase("D", range(3 * quarter, N))
        restarting.join()
        forget_connections()
        last_answer = time.monotonic()

        acknowledged = list(clients.acknowledged)
        try:
            wait_for(
                lambda: (
                    (s := final_state(acknowledged))["final"] == s["with_suggestions"] == len(acknowledged)
                    and s["open_jobs"] == 0
                ),
                timeout=FINAL_WITHIN_SECONDS,
                interval=1.0,
                message=f"every acknowledged ticket decided with suggestions:\n{replacement[0].log()[-4000:]}",
            )
        finally:
            watch.stopped.set()
        to_final = time.monotonic() - last_answer
        state = final_state(acknowledged)

    statuses = Counter(clients.answers)
    stored = Counter(Ticket.objects.filter(subject__startswith="fault-run ").values_list("subject", flat=True))
    sends = TicketJob.objects.filter(ticket__subject__startswith="fault-run ").aggregate(n=Sum("sends"))["n"]
    figures = {
        "tickets": N,
        "acknowledged": len(acknowledged),
        "stored": sum(stored.values()),
        "duplicates": sum(n - 1 for n in stored.values() if n > 1),
        "seconds_sending": round(last_answer - started, 1),
        "seconds_to_final_after_last_answer": round(to_final, 1),
        "longest_inference_queue": watch.longest,
        "messages_sent": sends,
        "messages_resent": sends - 2 * len(acknowledged),
        # Messages still reserved by the killed worker (Redis hands them out again after the visibility
        # timeout; their work was re-sent and done meanwhile, so the copies find nothing to do).
        "unacked_in_redis_at_end": unacked_in_redis(),
        "answers": {f"{phase} {status}": n for (phase, status), n in sorted(statuses.items())},
        **state,
    }
    if report := os.environ.get("TRIAGE_FAULT_REPORT"):
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))

    assert len(acknowledged) == N, figures
    assert set(stored) == set(acknowledged) and figures["duplicates"] == 0, figures
    assert not [key for key in figures["answers"] if key.startswith("C ") and key != "C 201"], figures
    assert not [key for key in figures["answers"] if key.split()[1] not in ("201", "503")], figures
    assert state == {"stored": N, "final": N, "with_suggestions": N, "open_jobs": 0}
    # Each ticket has two pieces of work; re-sends stay few (the old sweeper sent ~7 per ticket).
    assert sends <= 2 * N * 1.5, figures
    assert not Ticket.objects.annotate(n=Count("jobs")).exclude(n=2).filter(subject__startswith="fault-run ")
