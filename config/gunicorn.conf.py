"""gunicorn settings of the web server: ``gunicorn config.wsgi:application -c config/gunicorn.conf.py``.

Used by the Docker image, docker-compose's ``web`` service and ``bench/bench_api.py``. A request is
mostly Python (DRF, serialisation) with short waits on Postgres and Redis, so:

* one worker process per CPU core (``GUNICORN_WORKERS``, default: the cores this process may use):
  the GIL lets one process use one core, and more processes than cores only take turns;
* ``gthread`` workers with ``GUNICORN_THREADS`` threads each (default 8): a thread waiting on the
  database or Redis lets another run, and keep-alive connections are held without a thread each, so
  50 concurrent clients are served by 2 x 8 threads. With sync workers a client waits for a free
  process (measured: 37 requests/s, p95 1.6 s with 3 sync workers and 50 clients on 2 cores);
* every thread keeps its own database connection (``DB_CONN_MAX_AGE``): workers x threads must stay
  under Postgres' ``max_connections`` (100 by default) together with the Celery workers.

``bench/bench_api.py`` measures this configuration with 50 clients; bench/README.md has the numbers.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# One thread of arithmetic per request: a web worker runs GUNICORN_THREADS requests at once, and the
# deflection box's embedder (search/deflection.py) splitting one request over every core only makes
# the others wait (measured: p95 334 ms with one thread vs 595 ms with two, bench/bench_deflection.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = _int("GUNICORN_WORKERS", _cores())
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 8)
keepalive = 5  # seconds an idle keep-alive connection stays open
timeout = _int("GUNICORN_TIMEOUT", 60)
graceful_timeout = 30
# Recycle workers now and then so that slow leaks (caches, fragmentation) cannot grow without bound. Not
# often: a new worker loads the deflection embedder before it serves (seconds of CPU, 40 s on a busy
# 2-core machine), leaving the others the whole load meanwhile; 5,000 requests was every ~4 minutes per
# worker with 50 agents. 50,000: about every 40 minutes per worker at that rate.
max_requests = 50_000
max_requests_jitter = 5_000
# Load Django once in the master and fork: faster start, shared memory pages. Nothing opens a database
# or Redis connection at import time, so the children do not share sockets.
preload_app = True
# Heartbeat files in memory, not on a container's overlay filesystem (which can stall the workers).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # "-" for stdout
errorlog = "-"


def post_worker_init(worker) -> None:
    # The new-ticket form's deflection box embeds the typed text in the web process
    # (search/deflection.py): load the bi-encoder now, not on the first keystroke.
    from search.deflection import warm

    warm()
