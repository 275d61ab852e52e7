"""``/healthz``: database, pgvector, Redis and Celery worker status as JSON; 503 when one is down."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _check_pgvector() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return {"ok": False, "error": "the vector extension is not installed (run migrate)"}
    return {"ok": True, "version": row[0]}


def _check_redis() -> dict:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    client.ping()
    return {"ok": True}


def _check_workers() -> dict:
    from config.celery import app

    # A fresh connection: a pooled one is stale after Redis restarts, and would fail every check after.
    with app.connection_for_read() as conn:
        replies = app.control.inspect(timeout=1.0, connection=conn).active_queues() or {}
    queues = sorted({q["name"] for qs in replies.values() for q in qs})
    missing = [q for q in ("default", "inference", "training") if q not in queues]
    ok = bool(replies) and not missing
    return {"ok": ok, "workers": sorted(replies), "queues": queues, "missing_queues": missing}


CHECKS = {
    "database": _check_database,
    "pgvector": _check_pgvector,
    "redis": _check_redis,
    "workers": _check_workers,
}


@never_cache
@require_GET
def healthz(request):
    started = time.monotonic()
    report: dict[str, dict] = {}
    for name, check in CHECKS.items():
        try:
            report[name] = check()
        except Exception as exc:  # a health check reports every failure, whatever it is
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    healthy = all(part["ok"] for part in report.values())
    body = {"status": "ok" if healthy else "down", "checks": report, "ms": round((time.monotonic() - started) * 1000)}
    return JsonResponse(body, status=200 if healthy else 503)
