"""Django's Redis cache with one ``redis.Redis`` client per connection pool, made once.

Django's ``RedisCacheClient`` makes a new ``redis.Redis`` for every cache call, and redis-py fills
each new client's table of ~170 response callbacks: ~0.4 ms of CPU a call, and an API request makes
three (the token lookup, the throttle's read and write), a tenth of what a ticket detail costs
(bench/bench_api.py). A client holds no connection of its own (each command borrows one from the
pool and gives it back), and redis-py says one client may be shared by threads.
"""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _ReusingClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            # Two threads may both make one; either does, the pool is the same.
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class SharedClientRedisCache(RedisCache):
    """``RedisCache`` that reuses its ``redis.Redis`` clients (``CACHES`` ``BACKEND`` or built directly)."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _ReusingClient
