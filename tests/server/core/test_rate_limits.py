"""Fixed-window rate limits in the shared cache: on the database cache (embedded), on Redis
(production) and on a process's memory (debug)."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from django.core.cache import caches

from server.config.environment import Environment
from server.core import rate_limits
from server.core.rate_limits import Limit, LimitReached

pytestmark = pytest.mark.django_db

# 1_000_000_040 s is 20 s into a minute (1_000_000_020 is a multiple of 60): 40 s of its window are left.
NOW = 1_000_000_040.0


@pytest.fixture(params=["database", "redis", "locmem"])
def backend(request, settings) -> str:  # type: ignore[no-untyped-def]
    """The cache under test, with a key prefix of its own so that no counter is shared or deleted."""
    if request.param == "database":
        options = Environment({}).cache("CACHE_URL", production=True)
    elif request.param == "redis":
        url = os.environ.get("CELERY_BROKER_URL", "")
        if not url.startswith("redis"):
            pytest.skip("needs CELERY_BROKER_URL=redis://… (make test sets it)")
        options = Environment({"CACHE_URL": url}).cache("CACHE_URL", production=True)
    else:
        options = Environment({"CACHE_URL": "locmem://"}).cache("CACHE_URL", production=False)
    settings.CACHES = {"default": {**options, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
    return str(request.param)


def test_a_limit_allows_its_count_in_a_window_then_says_when_the_window_ends(backend: str) -> None:
    limit = Limit("joins", "3/minute", "203.0.113.7")
    for _ in range(3):
        rate_limits.take([limit], now=NOW)

    with pytest.raises(LimitReached) as reached:
        rate_limits.take([limit], now=NOW + 10)

    assert (reached.value.limit, reached.value.retry_after) == (limit, 30)
    rate_limits.take([limit], now=NOW + 40)  # the next window
    rate_limits.take([Limit("joins", "3/minute", "203.0.113.8")], now=NOW)  # another subject


def test_take_is_all_or_nothing(backend: str) -> None:
    address, link = Limit("address", "2/hour", "203.0.113.7"), Limit("link", "1/hour", "study-1")
    rate_limits.take([address, link], now=NOW)

    with pytest.raises(LimitReached) as reached:
        rate_limits.take([address, link], now=NOW)

    assert reached.value.limit == link
    # The refused take gave back the address's unit: one is left of its two.
    rate_limits.take([address], now=NOW)
    with pytest.raises(LimitReached):
        rate_limits.take([address], now=NOW)


def test_give_back_returns_the_units_taken(backend: str) -> None:
    limit = Limit("first-pair", "1/hour", "203.0.113.7")
    rate_limits.give_back(rate_limits.take([limit], now=NOW))

    rate_limits.take([limit], now=NOW)
    with pytest.raises(LimitReached):
        rate_limits.take([limit], now=NOW)


def test_concurrent_takes_on_redis_allow_exactly_the_limit(backend: str) -> None:
    if backend != "redis":
        pytest.skip("exact under concurrency on Redis (atomic INCR); see the module")
    limit = Limit("joins", "50/hour", "203.0.113.7")
    allowed: list[int] = []

    def flood() -> None:
        for _ in range(25):
            try:
                rate_limits.take([limit], now=NOW)
            except LimitReached:
                continue
            allowed.append(1)
        caches.close_all()

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(allowed) == 50
