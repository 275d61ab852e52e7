"""A real Celery worker in a subprocess, against the test database and the test Redis.

End-to-end tests use this instead of eager mode: tasks go through Redis, run in another process,
and must commit to Postgres for the test to see their effect.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """DATABASE_URL of the database pytest-django created (``test_<name>``)."""
    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


class Worker:
    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def child_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.process.pid).children(recursive=True)]


def purge_queues() -> None:
    from config.celery import app

    for queue in ("default", "inference", "training"):
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)


@contextmanager
def celery_worker(
    queues: str = "default,inference,training",
    concurrency: int = 1,
    extra_env: dict | None = None,
    *,
    beat: bool = False,
) -> Iterator[Worker]:
    """Start ``celery worker`` (with ``beat``: and the beat scheduler in it) and wait until it answers a
    ping; stop it afterwards."""
    from config.celery import app

    log_dir = BASE_DIR / ".data" / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"worker-{os.getpid()}-{time.monotonic_ns()}.log"
    name = f"test-{time.monotonic_ns()}@localhost"
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "TRIAGE_ENV": "test",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log_file = open(log_path, "wb")
    beat_args = ["-B", "--schedule", str(log_path.with_suffix(".beat"))] if beat else []
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", queues, "-c", str(concurrency), "-P", "prefork", "-n", name,
            "--without-gossip", "--without-mingle", "--loglevel", "INFO", *beat_args,
        ],
        cwd=BASE_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    worker = Worker(process, log_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"celery worker exited with {process.returncode}:\n{worker.log()[-4000:]}")
            # A fresh connection each time: a pooled one may be stale after a test restarted Redis.
            with app.connection_for_write() as conn:
                if app.control.ping(destination=[name], timeout=0.5, connection=conn):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not answer within 120 s:\n{worker.log()[-4000:]}")
        yield worker
    finally:
        stop_process_group(process)
        log_file.close()


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group started with ``start_new_session``; SIGKILL it after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail with ``message`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
