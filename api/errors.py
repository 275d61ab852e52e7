"""JSON answers for every failure under ``/api/``, those Django raises before a view runs included.

DRF renders its own errors; these cover the rest: URLs no route matches (404), bodies over
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django raises ``RequestDataTooBig`` when the body is read: 413),
other refused requests (400, 403) and crashes (500). Pages outside the API keep Django's HTML pages.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import APIException

from config.unavailable import outage_response

API_PREFIX = "/api/"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__(f"Request body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def error(detail: str, code: int) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=code)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        too_large = PayloadTooLarge()
        return error(str(too_large.detail), too_large.status_code)
    return error("Bad request.", status.HTTP_400_BAD_REQUEST)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api(request):
        return defaults.permission_denied(request, exception)
    return error("You do not have permission to perform this action.", status.HTTP_403_FORBIDDEN)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api(request):
        return defaults.page_not_found(request, exception)
    return error("Not found.", status.HTTP_404_NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception: sys.exc_info() holds it.
    if (unavailable := outage_response(request, sys.exc_info()[1])) is not None:
        return unavailable
    if not is_api(request):
        return defaults.server_error(request)
    return error("Server error.", status.HTTP_500_INTERNAL_SERVER_ERROR)
