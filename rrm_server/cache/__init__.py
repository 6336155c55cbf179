"""Comparison cache: exact per-vote keys, memory or Redis backends, coalescing and fail-open."""

from __future__ import annotations

from rrm_server.cache.backends import CacheBackend, CacheUnavailable, MemoryBackend, RedisBackend
from rrm_server.cache.store import CacheStats, Codec, Job, VoteCache

__all__ = ["CacheBackend", "CacheStats", "CacheUnavailable", "Codec", "Job", "MemoryBackend", "RedisBackend",
           "VoteCache", "build_cache"]


def build_cache(settings) -> VoteCache:  # type: ignore[no-untyped-def]
    """Redis when a URL is configured, else the bounded in-memory LRU; None backend when disabled."""
    if not settings.cache_enabled:
        return VoteCache(backend=None)
    if settings.cache_url:
        backend: CacheBackend = RedisBackend(settings.cache_url, prefix=settings.cache_prefix,
                                             timeout=settings.cache_timeout)
    else:
        backend = MemoryBackend(max_entries=settings.cache_max_entries)
    return VoteCache(backend=backend, lease_ttl=settings.cache_lease_ttl)
