"""Rate limits per API token (per user for sessions, per address for anonymous requests).

Rates are DRF throttle scopes in ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``: ``api_agent``,
``api_admin``, ``api_integration`` (by token scope), ``api_session`` and ``api_anon``. Counts live
in Redis so that every web process shares them.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiToken
from .redis_cache import SharedClientRedisCache

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def throttle_cache() -> SharedClientRedisCache:
    return SharedClientRedisCache(settings.REDIS_URL, {"KEY_PREFIX": "api-throttle"})


def throttle_scope(request) -> str:
    if isinstance(request.auth, ApiToken):
        return f"api_{request.auth.scope}"
    if request.user and request.user.is_authenticated:
        return "api_session"
    return "api_anon"


class PerTokenRateThrottle(SimpleRateThrottle):
    def __init__(self) -> None:
        # The scope depends on the request, so the rate is looked up in allow_request.
        self.cache = throttle_cache()

    def allow_request(self, request, view) -> bool:
        self.scope = throttle_scope(request)
        # Read at request time, not import time, so that changed settings take effect.
        self.rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception:  # redis unreachable: serving unthrottled beats refusing every request
            logger.warning("API throttling skipped: its cache is unreachable", exc_info=True)
            return True

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, ApiToken):
            # The digest, not the row id: ids restart with a fresh database, digests never repeat.
            ident = request.auth.digest[:32]
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
