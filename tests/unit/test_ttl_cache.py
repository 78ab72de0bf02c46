"""TTLCache: expiry, LRU bound, the observer's counts, single-flight loading."""

from __future__ import annotations

import asyncio

import pytest

from sample_service.ttl_cache import TTLCache


class Counts:
    def __init__(self) -> None:
        self.hits = self.misses = self.evictions = 0
        self.entries = -1

    def hit(self) -> None:
        self.hits += 1

    def miss(self) -> None:
        self.misses += 1

    def evicted(self, n: int) -> None:
        self.evictions += n

    def set_entries(self, n: int) -> None:
        self.entries = n


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(max_entries: int = 3, ttl_s: float = 10.0) -> tuple[TTLCache[str, int], Counts, Clock]:
    counts, clock = Counts(), Clock()
    return TTLCache(max_entries=max_entries, ttl_s=ttl_s, observer=counts, clock=clock), counts, clock


def test_hit_miss_and_entries() -> None:
    cache, counts, _ = make()
    assert cache.get("a") is None
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert (counts.hits, counts.misses, counts.entries) == (1, 1, 1)


def test_entries_expire_after_ttl() -> None:
    cache, counts, clock = make(ttl_s=5)
    cache.put("a", 1)
    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None
    assert (counts.evictions, counts.entries, len(cache)) == (1, 0, 0)


def test_least_recently_used_goes_first() -> None:
    cache, counts, _ = make(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert counts.evictions == 1 and counts.entries == 2


def test_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        TTLCache(max_entries=0, ttl_s=1)
    with pytest.raises(ValueError):
        TTLCache(max_entries=1, ttl_s=0)


async def test_concurrent_misses_load_once() -> None:
    cache, counts, _ = make()
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(cache.get_or_load("k", loader) for _ in range(20)))
    assert results == [42] * 20 and calls == 1
    assert counts.misses == 20 and counts.hits == 0  # all missed; only one went to the loader
    assert await cache.get_or_load("k", loader) == 42 and calls == 1 and counts.hits == 1


async def test_failed_load_is_not_cached_and_reaches_every_waiter() -> None:
    cache, _, _ = make()

    async def boom() -> int:
        await asyncio.sleep(0.01)
        raise RuntimeError("db down")

    results = await asyncio.gather(*(cache.get_or_load("k", boom) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(cache) == 0

    async def ok() -> int:
        return 7

    assert await cache.get_or_load("k", ok) == 7


async def test_waiters_load_again_when_the_loading_caller_is_cancelled() -> None:
    cache, _, _ = make()
    started = asyncio.Event()
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.05)
        return 9

    first = asyncio.create_task(cache.get_or_load("k", loader))
    await started.wait()
    waiters = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(3)]
    await asyncio.sleep(0)  # the waiters are now parked on the first caller's load
    first.cancel()
    assert await asyncio.gather(*waiters) == [9, 9, 9]
    assert first.cancelled() and calls == 2  # one new load, shared by the three waiters


async def test_a_cancelled_waiter_is_still_cancelled() -> None:
    cache, _, _ = make()

    async def loader() -> int:
        await asyncio.sleep(0.05)
        return 1

    loading = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await loading == 1  # and the load it waited on went on for the others
