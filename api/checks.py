"""System checks: refuse throttle rates DRF would only fail on at the first request."""

from __future__ import annotations

import re

from django.core import checks

RATE = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")
SCOPES = ("api_agent", "api_admin", "api_integration", "api_session", "api_anon")


@checks.register()
def check_throttle_rates(app_configs, **kwargs):
    from rest_framework.settings import api_settings

    errors = []
    rates = api_settings.DEFAULT_THROTTLE_RATES or {}
    for scope in SCOPES:
        rate = rates.get(scope)
        if rate is not None and not RATE.match(str(rate)):
            errors.append(checks.Error(f"throttle rate {scope}={rate!r} is not like '120/min'", id="api.E001"))
    return errors
