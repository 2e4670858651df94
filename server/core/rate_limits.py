"""Fixed-window rate limits kept in Django's cache, shared by every process that shares the cache.

A limit is a rate (``30/hour``) applied to one subject (a client address, a study). Its counter
is a cache key named after the limit, the subject and the window's number, so a window ends on
its own (no reset job) and a counter that expires late never stretches its window. A fixed window
lets a client spend up to twice a rate across a window boundary; that bound is good enough for
stopping floods and costs one cache increment per check.

``take`` is all or nothing: a refused request spends no budget, so a client that hammers a spent
limit neither pushes its own window further nor uses up another limit it shares with others (a
flood from one address never eats the budget of the study's link).

Counting is exact on Redis (atomic INCR) and on the embedded SQLite database cache (the increment
runs inside an IMMEDIATE transaction, which holds the write lock); with the database cache on
PostgreSQL two concurrent increments can count once, which only ever lets a few more through.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.cache.backends.db import DatabaseCache
from django.db import router, transaction

from server.config.environment import parse_rate

KEY_PREFIX = "lovelace:rate"


@dataclass(frozen=True)
class Limit:
    name: str  # what is limited, e.g. "crowd-join-address"
    rate: str  # "<count>/<period>"
    subject: str  # who it is counted for: an address, a study id


@dataclass(frozen=True)
class Taken:
    """The budget one request took: ``give_back`` returns it when the request did nothing."""

    keys: tuple[str, ...]


class LimitReached(Exception):
    def __init__(self, limit: Limit, retry_after: int) -> None:
        super().__init__(f"{limit.name} for {limit.subject}: {limit.rate} reached")
        self.limit = limit
        self.retry_after = retry_after  # seconds until its window ends


def _window(limit: Limit, now: float) -> tuple[str, int, int]:
    """(cache key, count allowed, seconds left in the window) at ``now``."""
    count, period = parse_rate(limit.rate, name=limit.name)
    index = int(now // period)
    left = max(1, int((index + 1) * period - now))
    return f"{KEY_PREFIX}:{limit.name}:{limit.subject}:{period}:{index}", count, left


def _cache() -> BaseCache:
    return caches[DEFAULT_CACHE_ALIAS]


@contextlib.contextmanager
def _serialised(cache: BaseCache) -> Iterator[None]:
    # The database cache's increment is a read then a write; in one transaction on SQLite
    # (IMMEDIATE: the write lock is taken at BEGIN) no other process can interleave.
    if isinstance(cache, DatabaseCache):
        with transaction.atomic(using=router.db_for_write(cache.cache_model_class)):
            yield
    else:
        yield


def _increment(cache: BaseCache, key: str, timeout: int) -> int:
    if cache.add(key, 1, timeout):
        return 1
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between the two calls: this request opens the window again
        cache.set(key, 1, timeout)
        return 1


def _decrement(cache: BaseCache, key: str) -> None:
    with contextlib.suppress(ValueError):  # expired meanwhile: nothing left to give back
        cache.decr(key)


def take(limits: Sequence[Limit], *, now: float | None = None) -> Taken:
    """Spend one unit of every limit, or none: raises ``LimitReached`` (for the first spent limit,
    in the order given) after giving back what it took."""
    moment = time.time() if now is None else now
    cache = _cache()
    taken: list[str] = []
    with _serialised(cache):
        for limit in limits:
            key, allowed, left = _window(limit, moment)
            # The timeout outlives the window a little, so the key cannot vanish inside it.
            if _increment(cache, key, left + 1) > allowed:
                for spent in (*taken, key):
                    _decrement(cache, spent)
                raise LimitReached(limit, left)
            taken.append(key)
    return Taken(keys=tuple(taken))


def give_back(taken: Taken) -> None:
    cache = _cache()
    with _serialised(cache):
        for key in taken.keys:
            _decrement(cache, key)
