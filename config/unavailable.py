"""A 503 with ``Retry-After`` when the database or the broker cannot be reached, instead of a 500.

A Postgres restart, a failover or a Redis outage is not a bug in the request: the client should wait
and send it again. API paths get JSON, pages a short HTML page. ``ServiceUnavailableMiddleware`` turns
the errors views raise into this answer; ``api.errors.server_error`` (``handler500``) asks
``outage_response`` first for errors raised outside a view (a middleware reading the session, say).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

logger = logging.getLogger(__name__)


def outage_of(exc: BaseException | None) -> str | None:
    """``"database"`` or ``"broker"`` when ``exc`` says that one cannot be reached now, else None."""
    from kombu.exceptions import OperationalError as BrokerOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, DatabaseOperationalError | DatabaseInterfaceError):
        return "database"
    if isinstance(exc, BrokerOperationalError | RedisConnectionError | RedisTimeoutError):
        return "broker"
    return None


def unavailable_response(request: HttpRequest, what: str) -> HttpResponse:
    """The 503 for ``what`` ("database" or "broker"): JSON under ``/api/``, a short page elsewhere."""
    wait = settings.TRIAGE_RETRY_AFTER_SECONDS
    message = f"The {what} cannot be reached right now. Nothing was lost; please try again in {wait} seconds."
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": message, "code": "service_unavailable"}, status=503)
    else:
        # Rendered without the request: context processors would read the user from the database.
        response = HttpResponse(loader.get_template("503.html").render({"message": message}), status=503)
    response["Retry-After"] = str(wait)
    return response


def outage_response(request: HttpRequest, exc: BaseException | None) -> HttpResponse | None:
    """The 503 for ``exc`` if it is an outage, else None (for exception handlers that answer first)."""
    what = outage_of(exc)
    if what is None:
        return None
    logger.warning("%s %s: the %s is unreachable (%s: %s); answered 503", request.method, request.path, what,
                   type(exc).__name__, exc)  # fmt: skip
    return unavailable_response(request, what)


class ServiceUnavailableMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return outage_response(request, exception)
