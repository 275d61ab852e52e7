"""DRF exception handler that also answers Django ``ValidationError`` from services as a 400, and a body
over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` as a 413."""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

from config.unavailable import outage_response

from .errors import PayloadTooLarge


def field_errors(error: DjangoValidationError) -> dict[str, list[str]]:
    """The service's messages keyed by field, in DRF's shape (``non_field_errors`` for the rest)."""
    if hasattr(error, "error_dict"):
        return {
            (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
            for field, messages in error.message_dict.items()
        }
    return {api_settings.NON_FIELD_ERRORS_KEY: error.messages}


def api_exception_handler(exc, context):
    request = context.get("request")
    if request is not None and (unavailable := outage_response(request, exc)) is not None:
        return unavailable
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(field_errors(exc))
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    return exception_handler(exc, context)
