"""Search settings: ``settings.<NAME>`` when the project defines it, else the environment, else the default.

Every name here is listed in the report of issue #4 for ``config/settings.py`` and ``.env.example``;
reading them here keeps the search app usable until then. Values are checked with the same typed
helpers as the settings file, so a bad value fails loudly (``ImproperlyConfigured``).
"""

from __future__ import annotations

from django.conf import settings

from config.settings import env_int, env_str


def _int(name: str, default: int, minimum: int = 1) -> int:
    value = getattr(settings, name, None)
    return int(value) if value is not None else env_int(name, default, minimum=minimum)


def dense_candidates() -> int:
    """Passages taken from the HNSW index per query (``SEARCH_DENSE_CANDIDATES``)."""
    return _int("SEARCH_DENSE_CANDIDATES", 100)


def lexical_candidates() -> int:
    """Passages taken from Postgres full-text search per query (``SEARCH_LEXICAL_CANDIDATES``)."""
    return _int("SEARCH_LEXICAL_CANDIDATES", 100)


def rerank_depth() -> int:
    """Fused passages the cross-encoder scores per query; 0 turns reranking off (``SEARCH_RERANK_DEPTH``).

    30 by default: on a CPU a 12-layer cross-encoder costs about 10-20 ms a pair, and the fused
    top 30 passages already hold the helpful article for nearly every demo ticket (see
    ``search/README.md``). With a GPU, 100 costs less than 30 does on a CPU.
    """
    return _int("SEARCH_RERANK_DEPTH", 30, minimum=0)


def rerank_batch_size() -> int:
    return _int("SEARCH_RERANK_BATCH_SIZE", 32)


def suggestions_per_ticket() -> int:
    """Articles stored as suggestions per ticket (``SEARCH_SUGGESTIONS``)."""
    return _int("SEARCH_SUGGESTIONS", 5)


def ef_search() -> int:
    """``hnsw.ef_search`` for queries; raised to the candidate count when lower (``SEARCH_EF_SEARCH``)."""
    return _int("SEARCH_EF_SEARCH", 200)


def rrf_k() -> int:
    return _int("SEARCH_RRF_K", 60)


def window_tokens() -> int:
    """Passage window in embedder tokens, title excluded (``SEARCH_WINDOW_TOKENS``)."""
    return _int("SEARCH_WINDOW_TOKENS", 200, minimum=16)


def overlap_tokens() -> int:
    return _int("SEARCH_OVERLAP_TOKENS", 40, minimum=0)


def article_max_chars() -> int:
    """Longest article body accepted, in characters (``SEARCH_ARTICLE_MAX_CHARS``, default 1,000,000)."""
    return _int("SEARCH_ARTICLE_MAX_CHARS", 1_000_000)


def query_max_chars() -> int:
    """Ticket text beyond this many characters is not read by retrieval (``SEARCH_QUERY_MAX_CHARS``)."""
    return _int("SEARCH_QUERY_MAX_CHARS", 2000)


def weights_file() -> str | None:
    """A JSON file of fusion weights that overrides the database row and the shipped default."""
    return getattr(settings, "SEARCH_WEIGHTS_FILE", None) or env_str("SEARCH_WEIGHTS_FILE")


def index_batch_size() -> int:
    """Articles one background re-index task handles before re-enqueueing itself."""
    return _int("SEARCH_INDEX_BATCH", 20)
