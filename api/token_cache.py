"""API token lookups kept in Redis for ``API_TOKEN_CACHE_SECONDS``, shared by every web process.

Every API request authenticates, and the lookup (the token, its user and the user's groups) was one
database query of the six to eight a ticket request makes. A cached lookup is one Redis round trip
(the generation and the entry in one ``MGET``) and no query.

An entry counts only for the *generation* it was read in. A change to any token, user, group or group
membership bumps the generation (``invalidate``, connected in ``api.apps``), once when it is saved and
again after its transaction commits, so a revoked token, a deactivated user or a lost role is refused
from the next request on, in every process; a request that read the old rows while the change was
committing stored them under the old generation. Changes made where Django sends no signal
(``QuerySet.update``, raw SQL) count once the entry expires. Redis unreachable: the database answers.

Entries hold field values, not pickled model instances (which tie the cache to one Django version), and
never the password hash.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from .models import ApiToken
from .redis_cache import SharedClientRedisCache

logger = logging.getLogger(__name__)

GENERATION = "generation"
REDIS_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
TOKEN_FIELDS = tuple(f.attname for f in ApiToken._meta.concrete_fields)


@lru_cache(maxsize=1)
def user_fields() -> tuple[str, ...]:
    """The user's columns but the password hash, in the model's order (as ``Model.from_db`` reads them)."""
    return tuple(f.attname for f in get_user_model()._meta.concrete_fields if f.attname != "password")


@lru_cache(maxsize=1)
def token_cache() -> SharedClientRedisCache:
    # A Redis that hangs costs a request a second at most, then the database answers.
    return SharedClientRedisCache(settings.REDIS_URL, {"KEY_PREFIX": "api-token", "OPTIONS": REDIS_TIMEOUTS})


def enabled() -> bool:
    return settings.API_TOKEN_CACHE_SECONDS > 0


def read(digest: str) -> tuple[tuple[ApiToken, frozenset[str]] | None, int | None]:
    """The cached token (with its user) and group names, or None; and the generation to store under
    (None: Redis did not answer, store nothing)."""
    try:
        found = token_cache().get_many([GENERATION, digest])
    except Exception:  # noqa: BLE001  (any Redis failure: the database answers instead)
        logger.warning("API token cache unreachable; reading tokens from the database", exc_info=True)
        return None, None
    generation = found.get(GENERATION, 0)
    entry = found.get(digest)
    if entry is None or entry["generation"] != generation:
        return None, generation
    user = get_user_model().from_db("default", user_fields(), entry["user"])
    token = ApiToken.from_db("default", TOKEN_FIELDS, entry["token"])
    token.user = user
    return (token, frozenset(entry["groups"])), generation


def store(digest: str, generation: int, token: ApiToken, groups: frozenset[str] | list[str]) -> None:
    entry = {
        "generation": generation,
        "token": [getattr(token, name) for name in TOKEN_FIELDS],
        "user": [getattr(token.user, name) for name in user_fields()],
        "groups": sorted(groups),
    }
    try:
        token_cache().set(digest, entry, settings.API_TOKEN_CACHE_SECONDS)
    except Exception:  # noqa: BLE001
        logger.warning("API token cache unreachable; token lookup not cached", exc_info=True)


def _bump() -> None:
    cache = token_cache()
    try:
        cache.add(GENERATION, 0, timeout=None)
        cache.incr(GENERATION)
    except Exception:  # noqa: BLE001
        # Entries already cached stay until they expire (API_TOKEN_CACHE_SECONDS): say so loudly.
        logger.error("API token cache unreachable: cached token lookups were not invalidated", exc_info=True)


def invalidate(sender: Any = None, **kwargs: Any) -> None:
    """Signal receiver: a token, user, group or membership changed; forget every cached lookup."""
    if not enabled() or str(kwargs.get("action", "post_")).startswith("pre_"):
        return  # m2m_changed says each membership change twice (pre_ and post_): the post_ is enough
    _bump()
    # Again once committed: a lookup that read the rows before the commit stored them under the
    # generation bumped above, which this makes stale.
    transaction.on_commit(_bump, robust=True)
