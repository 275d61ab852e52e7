"""Memory of one worker host with every serving model loaded: the processes ``make worker`` starts.

    .venv/bin/python bench/bench_worker_memory.py [--no-setfit] [--no-tag-models] [--skip-previous] [--tickets 4]

1. a database of its own (``triage_bench_worker`` on the embedded Postgres) with the demo help centre
   (``load_demo``), and a Redis database of its own (db 11 of the embedded Redis), so that no other
   worker takes its tasks;
2. unless ``--no-setfit``: a SetFit model trained on the demo labels (the production recipe cut to
   10 steps; memory does not depend on how long it trained), cached under ``.data/bench``, promoted to
   champion, so that routing runs SetFit and the zero-shot ensemble (embedder + cross-encoder) for the
   teams it was not trained on;
   unless ``--no-tag-models``: for each of the demo's single-label tag sets that the product trains
   (``TAG_SETS``: sentiment, urgency), a tag model trained by ``mlops.inference.setfit_tags`` on the tags
   evaluation set's dev split (``eval_data/tags/dev.jsonl``) with the product's recipe
   (``TRIAGE_TAG_SETFIT_STEPS``: 0, a head on the worker's embedder; a fine-tuned body's steps cut to
   ``TAG_STEPS``; ``--tag-steps`` to choose), cached under ``.data/bench``, promoted to the set's
   champion, so the worker loads it at start (``tags.scoring.warm_tag_scorers``) and tags with it; with
   ``--no-tag-models`` those champions are retired, so the zero-shot tag scorer tags every set;
3. the host's processes started by ``config.workers.start`` (what ``make worker`` runs: an inference
   worker with one pool process, a training worker, beat), ``--tickets`` demo tickets created and
   waited for until routed with suggestions, so every serving model has run;
4. every process of the worker measured: RSS and PSS (``/proc/<pid>/smaps_rollup``: shared pages
   divided among the processes sharing them, so a forked child's pages shared with its parent are not
   counted twice). ``rss_mb_total`` is the sum of RSS, the figure the target is stated in; PSS is
   recorded beside it;
5. for the record, the previous layout the same way (one worker ``-B -Q default,inference,training
   -c 2``: two pool processes, each with its own copy of every model).

Written to ``bench/results/bench_worker_memory.json``. Target: ``rss_mb_total`` <= 1,500 MB (exit 1 if
missed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.common import machine, write_result  # noqa: E402  (after the path is set)

DB_NAME = "triage_bench_worker"
REDIS_DB = 11
TARGET_MB = 1500.0
SETFIT_STEPS = 10
TAG_SETS = ("sentiment", "urgency")
TAG_STEPS = 10
TAG_TRAINING_SET = REPO / "eval_data" / "tags" / "dev.jsonl"
WORK_DIR = REPO / ".data" / "bench" / "worker-memory"
PREVIOUS = ["worker", "-B", "-Q", "default,inference,training", "-c", "2"]


def prepare(setfit: bool, tag_steps: int | None) -> dict[str, str]:
    """Database, Redis db, (with ``setfit``) a SetFit champion and the tag sets' champions trained with
    ``tag_steps`` (None: none serve); returns the workers' environment."""
    os.environ["TRIAGE_DB_NAME"] = DB_NAME
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if not os.environ.get("REDIS_URL"):
        from config.embedded import redis_url

        os.environ["REDIS_URL"] = redis_url(int(os.environ.get("TRIAGE_REDIS_PORT", "6391"))).rsplit("/", 1)[0]
        os.environ["REDIS_URL"] += f"/{REDIS_DB}"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command, get_commands

    from triage.models import Team

    call_command("migrate", verbosity=0)
    if not Team.objects.exists():
        call_command("load_demo", "--no-route", "--no-users", verbosity=0)
    if "load_tag_sets" in get_commands():  # the demo's tag sets: routed tickets are tagged in the same worker
        call_command("load_tag_sets", verbosity=0)
    from tests.workers import purge_queues

    purge_queues()
    if setfit:
        ensure_setfit_champion()
    if tag_steps is not None:
        ensure_tag_champions(min(TAG_STEPS, settings.TRIAGE_TAG_SETFIT_STEPS) if tag_steps < 0 else tag_steps)
    else:
        retire_tag_champions()
    return {"DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL, "TRIAGE_DB_NAME": DB_NAME}


def ensure_setfit_champion() -> None:
    """A SetFit model trained on the demo labels serves (trained once, reused by later runs)."""
    from django.conf import settings

    from learning.labels import collect_labels
    from mlops.inference.encoders import resolve_model_ref
    from mlops.inference.setfit_recipe import SetFitRecipe, train_setfit
    from mlops.inference.setfit_scorer import save_model
    from mlops.models import ModelVersion
    from mlops.registry import TRAINED_SCORER

    champion = ModelVersion.objects.champion()
    if champion is not None and champion.scorer == TRAINED_SCORER and champion.files_present():
        return
    target = WORK_DIR / "setfit-demo"
    base = resolve_model_ref(settings.TRIAGE_EMBEDDER_MODEL)
    if not target.exists():  # save_model writes the directory all at once
        examples = collect_labels().examples
        started = time.monotonic()
        recipe = SetFitRecipe(min_body_steps=SETFIT_STEPS, max_body_steps=SETFIT_STEPS)
        model = train_setfit([e.text for e in examples], [e.label for e in examples], base_model=base, recipe=recipe)
        save_model(model, target, texts=[e.text for e in examples], labels=[e.label for e in examples])
        print(f"trained a SetFit model on {len(examples)} demo labels in {time.monotonic() - started:.0f} s")
    serve(target, TRAINED_SCORER, version=f"bench-setfit-{int(time.time())}", what="a SetFit model serving")


def serve(target: Path, scorer: str, *, version: str, what: str, **fields) -> None:
    """The model saved at ``target`` registered and promoted to champion of its task (``fields``: ``task``)."""
    from django.conf import settings

    from mlops.models import ModelVersion
    from mlops.registry import promote_version

    row = ModelVersion.objects.create(
        scorer=scorer,
        model_ref=settings.TRIAGE_EMBEDDER_MODEL,
        version=version,
        status=ModelVersion.Status.CANDIDATE,
        artifact_path=str(target),
        trigger="manual",
        **fields,
    )
    promote_version(row, reason=f"bench_worker_memory: {what}")


def ensure_tag_champions(steps: int) -> None:
    """Each of ``TAG_SETS`` served by a tag model trained with ``steps`` (trained once, reused by later runs)."""
    from django.conf import settings

    from mlops.inference.encoders import resolve_model_ref
    from mlops.inference.setfit_tags import save_tag_model, train_tag_setfit
    from mlops.models import ModelVersion, tag_task
    from mlops.registry import TAG_TRAINED_SCORER
    from tags.evaluation import read_labelled
    from tags.models import TagSet
    from tags.scoring import TagSetSpec

    for slug in TAG_SETS:
        target = WORK_DIR / f"setfit-tags-{slug}-{steps}-steps"
        champion = ModelVersion.objects.champion(task=tag_task(slug))
        if champion is not None and champion.artifact_path == str(target) and champion.files_present():
            continue
        spec = TagSetSpec.from_row(TagSet.objects.scorable().get(slug=slug))
        labels = [t.slug for t in spec.tags]
        if not (target / "triage_tags.json").exists():  # save_tag_model writes the directory all at once
            data = read_labelled(TAG_TRAINING_SET, spec)
            started = time.monotonic()
            model = train_tag_setfit(
                data.texts,
                data.y,
                labels=labels,
                multi_label=not spec.single_label,
                base_model=resolve_model_ref(settings.TRIAGE_EMBEDDER_MODEL),
                steps=steps,
            )
            save_tag_model(model, target, labels=labels, multi_label=not spec.single_label, meta={"tag_set": slug})
            seconds = time.monotonic() - started
            print(f"trained a tag SetFit model for {slug} on {len(data.texts)} tickets in {seconds:.0f} s")
        version = f"bench-tags-{slug}-{int(time.time())}"
        serve(target, TAG_TRAINED_SCORER, version=version, what=f"a tag model serving {slug}", task=tag_task(slug))


def retire_tag_champions() -> None:
    """No tag set served by a trained model: the zero-shot tag scorer tags every set."""
    from mlops.models import ModelVersion, tag_task

    ModelVersion.objects.filter(
        task__in=[tag_task(slug) for slug in TAG_SETS], status=ModelVersion.Status.CHAMPION
    ).update(status=ModelVersion.Status.RETIRED)


def serving_tag_models() -> list[str]:
    from mlops.models import ModelVersion

    champions = ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION, task__startswith="tags:")
    return sorted(f"{v.task} {v.scorer} ({v.version})" for v in champions)


def route_demo_tickets(n: int, timeout: float) -> float:
    """Create ``n`` tickets and wait until each is routed with its suggestions; returns the seconds."""
    from tests.workers import wait_for
    from triage.models import Ticket, TicketJob
    from triage.services import create_ticket

    started = time.monotonic()
    stamp = time.time_ns()
    texts = [
        ("Charged twice", "I was charged twice for my subscription this month, please refund one."),
        ("Thermostat offline", "The thermostat shows offline in the app since the router was replaced."),
        ("Delete my data", "Please erase every piece of personal data you hold about me."),
        ("Parcel late", "My order has not arrived and tracking has not moved for a week."),
    ]
    ids = [
        create_ticket({"subject": f"{subject} ({stamp}-{i})", "body": body})[0].pk
        for i, (subject, body) in enumerate(texts[i % len(texts)] for i in range(n))
    ]
    done = (Ticket.Status.ROUTED, Ticket.Status.NEEDS_TRIAGE)

    def finished() -> bool:
        routed = Ticket.objects.filter(pk__in=ids, status__in=done).count() == n
        return routed and not TicketJob.objects.filter(ticket_id__in=ids, done_at__isnull=True).exists()

    wait_for(finished, timeout=timeout, interval=1.0, message=f"{n} tickets routed with suggestions")
    return time.monotonic() - started


def measure(roots: dict[str, int]) -> list[dict]:
    """RSS and PSS of each root process and all its descendants."""
    import psutil

    rows = []
    for role, pid in roots.items():
        root = psutil.Process(pid)
        for index, proc in enumerate([root, *root.children(recursive=True)]):
            try:
                info = proc.memory_full_info()
                cmd = " ".join(proc.cmdline()[2:9])
            except psutil.NoSuchProcess:
                continue
            rows.append(
                {
                    "process": role if index == 0 else f"{role} child {index}",
                    "pid": proc.pid,
                    "rss_mb": round(info.rss / 2**20, 1),
                    "pss_mb": round(getattr(info, "pss", 0) / 2**20, 1),
                    "command": cmd,
                }
            )
    return rows


def summary(rows: list[dict], configuration: str, seconds: float) -> dict:
    return {
        "configuration": configuration,
        "rss_mb_total": round(sum(r["rss_mb"] for r in rows), 1),
        "pss_mb_total": round(sum(r["pss_mb"] for r in rows), 1),
        "processes": rows,
        "seconds_to_route_first_tickets": round(seconds, 1),
    }


def run_current(env: dict[str, str], n: int, timeout: float) -> dict:
    from config import workers

    data_dir = WORK_DIR / "current"
    data_dir.mkdir(parents=True, exist_ok=True)
    workers.stop(data_dir)
    pids = workers.start(data_dir, env=env)
    try:
        seconds = route_demo_tickets(n, timeout)
        time.sleep(3)  # the pool process's memory after its tasks, not mid-task
        rows = measure(pids)
    finally:
        workers.stop(data_dir)
    description = {name: " ".join(workers.celery_args(name, data_dir=Path("DATA"))) for name in workers.PROCESSES}
    layout = "; ".join(f"{name}: celery -A config {args}" for name, args in description.items())
    return summary(rows, f"config/workers.py (make worker): {layout}", seconds)


def run_previous(env: dict[str, str], n: int, timeout: float) -> dict:
    from tests.workers import stop_process_group

    data_dir = WORK_DIR / "previous"
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [*PREVIOUS, "--schedule", str(data_dir / "celerybeat-schedule"), "-n", f"previous-{os.getpid()}@%h"]
    with open(data_dir / "worker.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel", "INFO"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        seconds = route_demo_tickets(n, timeout)
        time.sleep(3)
        rows = measure({"worker": process.pid})
    finally:
        stop_process_group(process)
    return summary(rows, "previous make worker: celery -A config " + " ".join(PREVIOUS), seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=4, help="tickets routed before measuring")
    parser.add_argument("--no-setfit", action="store_true", help="the zero-shot ensemble only")
    parser.add_argument(
        "--no-tag-models", action="store_true", help="no tag set served by a trained model (zero-shot tags only)"
    )
    parser.add_argument(
        "--tag-steps",
        type=int,
        default=-1,
        help=f"tag models' fine-tuning steps (default: the product's, at most {TAG_STEPS})",
    )
    parser.add_argument("--skip-previous", action="store_true", help="do not also measure the previous layout")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the tickets")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_worker_memory.json"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    env = prepare(setfit=not args.no_setfit, tag_steps=None if args.no_tag_models else args.tag_steps)
    from mlops.models import ModelVersion

    champion = ModelVersion.objects.champion()
    serving = f"{champion.scorer} ({champion.version})" if champion else "zero-shot (first ticket creates it)"
    current = run_current(env, args.tickets, args.timeout)
    print(f"make worker:  RSS {current['rss_mb_total']:.0f} MB, PSS {current['pss_mb_total']:.0f} MB")
    result = {
        "rss_mb_total": current["rss_mb_total"],
        "pss_mb_total": current["pss_mb_total"],
        "measure": "rss_mb_total: RSS of every process of the worker host, summed (pages shared between a "
        "parent and its forked child counted in both); pss_mb_total: proportional set size from "
        "/proc/<pid>/smaps_rollup (shared pages divided among their processes)",
        "serving": serving,
        "serving_tag_models": serving_tag_models(),
        "current": current,
    }
    if not args.skip_previous:
        previous = run_previous(env, args.tickets, args.timeout)
        print(f"previous:     RSS {previous['rss_mb_total']:.0f} MB, PSS {previous['pss_mb_total']:.0f} MB")
        result["previous"] = previous
    result["machine"] = machine(load_before)
    result["targets"] = {"rss_mb_total": TARGET_MB, "met": current["rss_mb_total"] <= TARGET_MB}
    write_result(args.out, result)
    return 0 if result["targets"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
