"""A burst of tickets through a real worker and Redis: micro-batched inference against the per-ticket path.

    TRIAGE_REDIS_PORT=6406 .venv/bin/python bench/bench_burst.py [--tickets 1000] [--baseline-tickets N]
        [--concurrency N] [--batch-size 0] [--routing-scorer auto] [--skip-baseline]

What it does, all on this machine:

1. a database of its own (``triage_bench_burst`` on the embedded Postgres) with the demo's teams and
   knowledge base (articles indexed with the packaged embedder), built once and reused;
2. the inference worker as ``make worker`` starts it (``config.workers``: prefork, one pool process
   that loads the models, queues ``inference,default``; ``--concurrency`` changes the pool) in the
   demo's zero-shot serving configuration (``TRIAGE_ROUTING_SCORER=auto``: offline the NLI model cannot
   load and the ensemble of the packaged bi-encoder and cross-encoder routes; suggestions with
   ``SEARCH_RERANK=auto``), warmed with a few tickets first;
3. ``--tickets`` demo-like tickets (the 330 demo tickets, then variations of them) created through
   ``create_ticket`` in one transaction: at commit every ticket's routing and suggestion messages go to
   Redis at once. Timed from the commit until every ticket is routed (or in needs-triage) and has its
   suggestions (both jobs done); per ticket, commit → its later job done (p50/p95);
4. the same with ``TRIAGE_INFERENCE_BATCH_SIZE=1``, which is today's per-ticket path: one message,
   one task, one ticket, one forward pass (the only addition is the claim of its job, one UPDATE).

It purges the ``inference`` and ``default`` queues of its Redis between runs: give it a Redis of its own
(``TRIAGE_REDIS_PORT``), never one a live worker or a test run uses.

Written to ``bench/results/bench_burst.json``: ``tickets_per_second``, ``baseline_tickets_per_second``,
``ratio``, ``tickets``, ``cpu`` (model and flags), load averages and the configuration of both runs.
Target: ratio >= 5 (exit status 1 if missed). On a shared 2-core CPU the per-ticket path takes about
a second a ticket or more: ``--baseline-tickets`` runs it on fewer tickets (tickets/s is what is
compared; the JSON records both counts).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.common import machine, percentile, write_result  # noqa: E402  (after the path is set)

DB_NAME = "triage_bench_burst"
TARGET_RATIO = 5.0
# How a cycle past the 330 demo tickets varies them: a follow-up says the same with a little more.
VARIATIONS = [("", ""), ("Re: ", " Any update on this?"), ("Still waiting: ", " This is getting urgent.")]


def setup_django() -> None:
    os.environ["TRIAGE_DB_NAME"] = DB_NAME
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()


def prepare_database() -> None:
    """Migrate; load the demo teams and knowledge base and index it (once)."""
    from django.core.management import call_command

    from search.indexing import index_article
    from search.models import Article
    from triage.management.commands.load_demo import DEMO_DIR
    from triage.models import Team

    call_command("migrate", verbosity=0)
    if not Team.objects.exists():
        for spec in json.loads((DEMO_DIR / "teams.json").read_text()):
            Team.objects.update_or_create(
                slug=spec["slug"], defaults={k: spec[k] for k in ("name", "description", "hypothesis")}
            )
        call_command("import_articles", str(DEMO_DIR / "articles.jsonl"), verbosity=0)
    pending = list(Article.objects.exclude(index_state=Article.IndexState.INDEXED).values_list("pk", flat=True))
    if pending:
        from mlops.inference.encoders import get_embedder

        embedder = get_embedder()
        for pk in pending:
            index_article(pk, embedder=embedder)
        print(f"indexed {len(pending)} articles", flush=True)


def demo_like(n: int, run: str) -> list[dict]:
    """``n`` tickets like the demo's: its 330 tickets, then follow-up variations of them."""
    from triage.management.commands.load_demo import DEMO_DIR

    rows = [json.loads(line) for line in (DEMO_DIR / "tickets.jsonl").read_text().splitlines()]
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        prefix, suffix = VARIATIONS[(i // len(rows)) % len(VARIATIONS)]
        out.append(
            {
                "external_id": f"burst-{run}-{i}",
                "subject": prefix + row["subject"],
                "body": row["body"] + suffix,
                "requester": row.get("requester", ""),
                "channel": row.get("channel", "web"),
            }
        )
    return out


class Worker:
    """``celery worker`` as ``make worker`` runs it, against the bench database."""

    def __init__(self, concurrency: int, env: dict[str, str], log_path: Path) -> None:
        from django.conf import settings

        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115
        self.name = f"burst-{time.monotonic_ns()}@localhost"
        full_env = {
            **os.environ,
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        from config.workers import celery_args

        # The production inference worker (``make worker``, docker-compose), under a name of its own.
        args = celery_args("inference", data_dir=REPO / ".data")
        args[args.index("-n") + 1] = self.name
        if concurrency:
            args[args.index("-c") + 1] = str(concurrency)
        command = [sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel", "INFO"]
        self.process = subprocess.Popen(
            command, cwd=REPO, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 600.0) -> None:
        from config.celery import app

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; see {self.log_path}")
            with app.connection_for_write() as conn:
                if app.control.ping(destination=[self.name], timeout=1.0, connection=conn):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


def purge() -> None:
    from config.celery import app

    for queue in ("default", "inference"):
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)


def enqueue(rows: list[dict]) -> tuple[list[int], float]:
    """Create the tickets in one transaction; their messages go out at commit. Returns ids and the commit time."""
    from django.db import transaction
    from django.utils import timezone

    from triage.services import create_ticket

    committed: list[float] = []
    with transaction.atomic():
        # Runs first after the commit, before the tickets' own callbacks send their messages.
        transaction.on_commit(lambda: committed.append(timezone.now().timestamp()))
        ids = [create_ticket(row)[0].pk for row in rows]
    return ids, committed[0]


def wait_done(ids: list[int], committed: float, label: str, timeout: float) -> dict[int, float]:
    """Poll until both jobs of every ticket are done; per ticket, seconds from the commit to the later one."""
    from django.db.models import Max

    from triage.models import TicketJob

    started = time.monotonic()
    last_print = 0.0
    while True:
        jobs = TicketJob.objects.filter(ticket_id__in=ids)
        done = {kind: jobs.filter(kind=kind, done_at__isnull=False).count() for kind in ("route", "suggest")}
        elapsed = time.monotonic() - started
        if done["route"] == done["suggest"] == len(ids):
            break
        if elapsed - last_print >= 10:
            rate = min(done.values()) / elapsed if elapsed else 0.0
            print(
                f"  [{label}] {elapsed:6.0f} s: routed {done['route']}/{len(ids)}, "
                f"suggested {done['suggest']}/{len(ids)} ({rate:.2f} tickets/s, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            last_print = elapsed
        if elapsed > timeout:
            raise RuntimeError(f"{label}: not done after {timeout:.0f} s: {done}")
        time.sleep(1.0)
    finished = jobs.values("ticket_id").annotate(last=Max("done_at"))
    return {row["ticket_id"]: row["last"].timestamp() - committed for row in finished}


def run(label: str, rows: list[dict], env: dict[str, str], concurrency: int, timeout: float) -> dict:
    """One burst through a fresh worker with ``env``; what it measured."""
    from triage.models import Prediction, TicketJob

    print(f"[{label}] starting a worker ({env})", flush=True)
    purge()  # what an earlier, interrupted run left in the queues
    log_path = REPO / ".data" / "bench" / f"burst-{label}.log"
    worker = Worker(concurrency, env, log_path)
    try:
        worker.wait_ready()
        # Warm-up: models load in each pool process at start; a few tickets make sure both have served.
        warm_ids, warm_commit = enqueue(demo_like(2 * max(concurrency, 1), f"warm-{label}-{time.time_ns()}"))
        wait_done(warm_ids, warm_commit, f"{label} warm-up", timeout)
        purge()
        load_before = os.getloadavg()
        print(f"[{label}] {len(rows)} tickets at once (load {load_before[0]:.1f})", flush=True)
        ids, committed = enqueue(rows)
        latencies = wait_done(ids, committed, label, timeout)
        load_after = os.getloadavg()
    finally:
        worker.stop()
        purge()
    wall = max(latencies.values())
    seconds = list(latencies.values())
    decisions = Prediction.objects.filter(ticket_id__in=ids)
    result = {
        "tickets": len(ids),
        "seconds": wall,
        "tickets_per_second": len(ids) / wall,
        "p50_s": statistics.median(seconds),
        "p95_s": percentile(seconds, 95),
        "predictions": decisions.count(),
        "jobs_with_error": TicketJob.objects.filter(ticket_id__in=ids).exclude(error="").count(),
        "scorer": sorted(set(decisions.values_list("scorer", flat=True))),
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "worker_env": env,
        "worker_log": str(log_path.relative_to(REPO)),
    }
    print(
        f"[{label}] {len(ids)} tickets in {wall:.1f} s: {result['tickets_per_second']:.2f} tickets/s, "
        f"p50 {result['p50_s']:.1f} s, p95 {result['p95_s']:.1f} s",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--baseline-tickets", type=int, help="tickets for the per-ticket run (default: --tickets)")
    parser.add_argument("--concurrency", type=int, default=0, help="pool processes (0: make worker's, one)")
    parser.add_argument("--batch-size", type=int, default=0, help="TRIAGE_INFERENCE_BATCH_SIZE (0: by device)")
    parser.add_argument("--routing-scorer", default="auto", help="TRIAGE_ROUTING_SCORER (auto: the demo's)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds allowed per run")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_burst.json"))
    args = parser.parse_args(argv)
    if not 1 <= args.tickets <= 100_000 or args.concurrency < 0 or args.batch_size < 0:
        parser.error("--tickets must be 1..100000, --concurrency >= 0, --batch-size >= 0")
    baseline_n = args.baseline_tickets or args.tickets

    # A TERM (a timeout, a person) still stops the worker and purges the queues (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_start = os.getloadavg()
    (REPO / ".data" / "bench").mkdir(parents=True, exist_ok=True)
    setup_django()
    from django.conf import settings

    from mlops.inference.batching import default_batch_size
    from mlops.inference.encoders import resolve_device

    prepare_database()
    stamp = str(time.time_ns())
    common = {"TRIAGE_ROUTING_SCORER": args.routing_scorer, "SEARCH_RERANK": "auto", "TRIAGE_ENV": settings.TRIAGE_ENV}
    batch_size = args.batch_size or default_batch_size(resolve_device())
    runs = {
        "batched": run(
            "batched",
            demo_like(args.tickets, f"b{stamp}"),
            {**common, "TRIAGE_INFERENCE_BATCH_SIZE": str(batch_size)},
            args.concurrency,
            args.timeout,
        )
    }
    if not args.skip_baseline:
        runs["per_ticket"] = run(
            "per-ticket",
            demo_like(baseline_n, f"p{stamp}"),
            {**common, "TRIAGE_INFERENCE_BATCH_SIZE": "1"},
            args.concurrency,
            args.timeout,
        )
    batched, baseline = runs["batched"], runs.get("per_ticket")
    ratio = batched["tickets_per_second"] / baseline["tickets_per_second"] if baseline else None
    result = {
        "benchmark": "burst",
        "tickets": args.tickets,
        "baseline_tickets": baseline_n if baseline else None,
        "tickets_per_second": batched["tickets_per_second"],
        "baseline_tickets_per_second": baseline["tickets_per_second"] if baseline else None,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "met": ratio is not None and ratio >= TARGET_RATIO,
        "p50_s": batched["p50_s"],
        "p95_s": batched["p95_s"],
        "baseline_p50_s": baseline["p50_s"] if baseline else None,
        "baseline_p95_s": baseline["p95_s"] if baseline else None,
        "runs": runs,
        "configuration": {
            "worker": "config.workers inference: celery worker -Q inference,default -P prefork -c "
            + f"{args.concurrency or 1} (models warmed in the pool process)",
            "batch_size": batch_size,
            "batch_wait_ms": settings.TRIAGE_INFERENCE_BATCH_WAIT_MS,
            "routing": f"TRIAGE_ROUTING_SCORER={args.routing_scorer}"
            + (" (the demo's zero-shot serving configuration)" if args.routing_scorer == "auto" else ""),
            "rerank": "SEARCH_RERANK=auto",
            "tickets": "demo tickets and follow-up variations, created in one transaction via create_ticket",
            "timing": "from the commit that enqueues the burst to both jobs (route, suggest) of a ticket done",
            "baseline": "TRIAGE_INFERENCE_BATCH_SIZE=1: one task, one ticket, one forward pass (today's path)",
        },
        "cpu": machine(load_start)["cpu"],
        "machine": machine(load_start),
        "load_average": list(os.getloadavg()),
    }
    write_result(args.out, result)
    if ratio is not None:
        print(f"ratio {ratio:.2f}x (target {TARGET_RATIO}x): {'met' if result['met'] else 'NOT met'}")
    return 0 if ratio is None or result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
