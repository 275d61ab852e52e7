"""API under load: 50 clients for 60 s against gunicorn serving the real app on the embedded Postgres.

    .venv/bin/python bench/bench_api.py [--clients 50] [--seconds 60] [--workers N --threads N]

What it does, all on this machine (loopback only, 127.0.0.1):

1. a database of its own (``triage_bench_api`` on the embedded Postgres) with a help desk that has
   history: ``--tickets`` (3,000) tickets, each with two routing decisions, five article suggestions
   (with their embedded passages), a prediction for each of the demo's 15 tags, two agent labels on one
   ticket in three and a tag label on one in five (``tests/api/realistic.py``), built once and reused
   (drop the database to rebuild it after that file changes);
2. gunicorn with ``config/gunicorn.conf.py`` (``TRIAGE_ENV=production``, DEBUG off), and, for the
   record, the previous setting (3 sync workers) in the same run, one after the other;
3. ``--clients`` clients, each with its own agent token and keep-alive connection, in a bounded loop
   for ``--seconds``: a page of the ticket list (50 tickets, some filtered by team or decision), then
   the detail of two tickets on it. No think time by default: each client sends its next request as
   soon as the last one is answered, so this measures the server at saturation (latency = clients /
   throughput). ``--think-ms`` gives each client a pause before each request (exponential, that mean),
   as agents reading a page do: the latency of 50 clients that are not all waiting at once.

Written to ``bench/results/bench_api.json``: requests/s, p50/p95/p99 latency, errors (any response
other than 200, or no response), per endpoint, for each server setting, with the CPU, load average and
the gunicorn settings. Target: p95 <= 300 ms and no errors with 50 clients (exit status 1 if missed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.common import machine, percentile, write_result  # noqa: E402  (after the path is set)

DB_NAME = "triage_bench_api"
P95_TARGET_MS = 300.0
TEAMS = ("billing", "shipping", "accounts", "privacy")
DECISIONS = ("auto_routed", "suggested", "abstained")


def prepare_database(n_tickets: int, n_tokens: int) -> tuple[str, str, list[str]]:
    """Migrate and fill the bench database (once); issue fresh tokens. Returns DATABASE_URL, REDIS_URL, secrets."""
    os.environ["TRIAGE_DB_NAME"] = DB_NAME
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from api.models import ApiToken
    from tests.api.realistic import build_help_desk
    from triage.models import Ticket
    from triage.roles import AGENTS

    call_command("migrate", verbosity=0)
    have = Ticket.objects.count()
    if have < n_tickets:
        started = time.perf_counter()
        build_help_desk(n_tickets - have, seed=have)
        print(f"built {n_tickets - have} tickets with history in {time.perf_counter() - started:.0f} s", flush=True)
    from django.contrib.auth.models import User

    agents = list(User.objects.filter(groups__name=AGENTS).order_by("pk")[:5])
    run = secrets.token_hex(4)
    tokens = [
        ApiToken.issue(agents[i % len(agents)], name=f"bench-{run}-{i}", scope=ApiToken.Scope.AGENT)[1]
        for i in range(n_tokens)
    ]
    return settings.DATABASE_URL, settings.REDIS_URL, tokens


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving the app on 127.0.0.1, started and stopped by this benchmark."""

    def __init__(self, database_url: str, redis_url: str, args: list[str]) -> None:
        self.port = free_port()
        self.log = open(REPO / ".data" / "bench" / f"gunicorn-{self.port}.log", "wb")  # noqa: SIM115
        env = {
            **os.environ,
            "TRIAGE_ENV": "production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            # As behind the TLS-terminating proxy of a deployment: HTTPS said by X-Forwarded-Proto.
            "DJANGO_SECURE_PROXY_SSL_HEADER": "1",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
        }
        command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-c", "config/gunicorn.conf.py"]
        self.process = subprocess.Popen(
            [*command, *args, "--bind", f"127.0.0.1:{self.port}"],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, token: str, timeout: float = 180.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/tickets/?page_size=1", headers=headers(token)
        )
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s; see {self.log.name}")
            time.sleep(0.5)

    def settle(self, timeout: float = 180.0) -> None:
        """Wait until gunicorn's processes are idle: one worker answering does not mean that the others
        have loaded the deflection embedder (``post_worker_init``), seconds of CPU that would otherwise
        be counted as the requests' (a few ms each in a 60 s run)."""
        deadline = time.monotonic() + timeout
        used = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.cpu_seconds()
            if now - used < 0.05:
                return
            used = now

    def cpu_seconds(self) -> float:
        """CPU time used so far by gunicorn's master and workers (user + system)."""
        import psutil

        total = 0.0
        master = psutil.Process(self.process.pid)
        for proc in [master, *master.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()


async def client(
    session, base: str, token: str, deadline: float, rng: random.Random, records: list, think: float = 0.0
) -> None:
    """One agent: a list page, then two tickets from it, until the deadline; with ``think`` (seconds) a
    pause after each answer, exponentially distributed with that mean, as a person reading the page."""
    import aiohttp

    sent = headers(token)

    async def get(kind: str, path: str):
        if think:
            await asyncio.sleep(min(rng.expovariate(1 / think), max(0.0, deadline - time.perf_counter())))
        started = time.perf_counter()
        try:
            async with session.get(base + path, headers=sent) as response:
                body = await response.read()
                records.append((kind, time.perf_counter() - started, response.status))
                return json.loads(body) if response.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            records.append((kind, time.perf_counter() - started, type(exc).__name__))
            return None

    while time.perf_counter() < deadline:
        roll = rng.random()
        if roll < 0.2:  # a team's queue: a few pages deep at most
            query = f"?page={rng.randint(1, 3)}&team={rng.choice(TEAMS)}"
        elif roll < 0.3:
            query = f"?page={rng.randint(1, 3)}&decision={rng.choice(DECISIONS)}"
        else:
            query = f"?page={rng.randint(1, 20)}"
        page = await get("list", f"/api/tickets/{query}")
        ids = [row["id"] for row in (page or {}).get("results", [])]
        for ticket_id in rng.sample(ids, min(2, len(ids))):
            if time.perf_counter() >= deadline:
                break
            await get("detail", f"/api/tickets/{ticket_id}/")


async def load(port: int, tokens: list[str], seconds: float, seed: int = 0, think: float = 0.0) -> tuple[list, float]:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    records: list = []
    started = time.perf_counter()
    deadline = started + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    sessions = [aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=1)) for _ in tokens]
    try:
        await asyncio.gather(
            *(
                client(session, base, token, deadline, random.Random(seed + i), records, think)
                for i, (session, token) in enumerate(zip(sessions, tokens, strict=True))
            )
        )
    finally:
        for session in sessions:
            await session.close()
    return records, time.perf_counter() - started


def summarise(records: list, elapsed: float) -> dict:
    def stats(rows: list) -> dict:
        ms = [seconds * 1000 for _, seconds, _ in rows]
        errors = [status for _, _, status in rows if status != 200]
        return {
            "requests": len(rows),
            "requests_per_second": len(rows) / elapsed,
            "p50_ms": statistics.median(ms) if ms else None,
            "p95_ms": percentile(ms, 95) if ms else None,
            "p99_ms": percentile(ms, 99) if ms else None,
            "errors": len(errors),
            "error_kinds": sorted({str(e) for e in errors}),
        }

    return {
        **stats(records),
        "seconds": elapsed,
        "by_endpoint": {kind: stats([r for r in records if r[0] == kind]) for kind in ("list", "detail")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tickets", type=int, default=3000)
    parser.add_argument("--workers", type=int, help="override config/gunicorn.conf.py")
    parser.add_argument("--threads", type=int, help="override config/gunicorn.conf.py")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause of each client before each request (exponential); 0: none, the server at saturation",
    )
    parser.add_argument("--skip-previous", action="store_true", help="do not also run the previous 3 sync workers")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_api.json"))
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 500 or not 1 <= args.seconds <= 600:
        parser.error("--clients must be 1..500 and --seconds 1..600")

    load_before = os.getloadavg()
    (REPO / ".data" / "bench").mkdir(parents=True, exist_ok=True)
    database_url, redis_url, tokens = prepare_database(args.tickets, args.clients)
    overrides = [*(["--workers", str(args.workers)] if args.workers else [])]
    overrides += ["--threads", str(args.threads)] if args.threads else []
    settings_runs = {"config/gunicorn.conf.py" + (" " + " ".join(overrides) if overrides else ""): overrides}
    if not args.skip_previous:
        settings_runs["previous: 3 sync workers"] = ["--worker-class", "sync", "--workers", "3", "--threads", "1"]
    results = {}
    for name, extra in settings_runs.items():
        server = Server(database_url, redis_url, extra)
        try:
            server.wait_ready(tokens[0])
            server.settle()
            cpu_before, client_before = server.cpu_seconds(), time.process_time()
            records, elapsed = asyncio.run(load(server.port, tokens, args.seconds, think=args.think_ms / 1000))
            server_cpu, client_cpu = server.cpu_seconds() - cpu_before, time.process_time() - client_before
        finally:
            server.stop()
        results[name] = {"gunicorn_args": extra, **summarise(records, elapsed)}
        # CPU per request says what the server costs apart from the machine's load: on an idle machine
        # with C cores it cannot serve more than C / (server + database + client CPU) requests a second.
        results[name]["server_cpu_ms_per_request"] = 1000 * server_cpu / max(1, len(records))
        results[name]["client_cpu_ms_per_request"] = 1000 * client_cpu / max(1, len(records))
        r = results[name]
        print(
            f"{name:<40} {r['requests_per_second']:>7.1f} req/s  p50 {r['p50_ms']:>6.0f} ms  "
            f"p95 {r['p95_ms']:>6.0f} ms  p99 {r['p99_ms']:>6.0f} ms  errors {r['errors']} {r['error_kinds']}  "
            f"server CPU {r['server_cpu_ms_per_request']:.1f} ms/request",
            flush=True,
        )
    import runpy

    conf = runpy.run_path(str(REPO / "config" / "gunicorn.conf.py"))
    ours = next(iter(results.values()))
    pause = f"a pause of {args.think_ms:.0f} ms on average before each request" if args.think_ms else "no pause"
    result = {
        "clients": args.clients,
        "seconds": args.seconds,
        "tickets": args.tickets,
        "think_ms": args.think_ms,
        "workload": f"per client, in a loop ({pause}): a list page (50 tickets; 20% filtered by team, 10% "
        "by decision), then the detail of two tickets on it; each client its own agent token and keep-alive "
        "connection; loopback 127.0.0.1",
        "server": {
            "config": "config/gunicorn.conf.py",
            "worker_class": conf["worker_class"],
            "workers": args.workers or conf["workers"],
            "threads": args.threads or conf["threads"],
            "TRIAGE_ENV": "production",
            "database": f"embedded Postgres ({DB_NAME}) over its unix socket",
        },
        "runs": results,
        "requests_per_second": ours["requests_per_second"],
        "p95_ms": ours["p95_ms"],
        "errors": ours["errors"],
        "machine": machine(load_before),
        "targets": {
            "p95_ms": P95_TARGET_MS,
            "p95_met": ours["p95_ms"] is not None and ours["p95_ms"] <= P95_TARGET_MS,
            "no_errors_met": ours["errors"] == 0,
        },
    }
    write_result(args.out, result)
    return 0 if result["targets"]["p95_met"] and result["targets"]["no_errors_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
