"""A small TTL + LRU cache with single-flight loading, reporting to a metrics observer.

Why not functools/cachetools: we need expiry *and* a size bound *and* hit/miss/eviction counts *and*
one load per key when a hundred requests miss at once (a cache stampede is its own p99 story).
Not thread-safe by design: it lives on one event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CacheObserver(Protocol):
    def hit(self) -> None: ...
    def miss(self) -> None: ...
    def evicted(self, n: int) -> None: ...
    def set_entries(self, n: int) -> None: ...


class _NullObserver:
    def hit(self) -> None: ...
    def miss(self) -> None: ...
    def evicted(self, n: int) -> None: ...
    def set_entries(self, n: int) -> None: ...


_MISSING = object()


class TTLCache(Generic[K, V]):
    def __init__(self, *, max_entries: int, ttl_s: float, observer: CacheObserver | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("max_entries must be >= 1 and ttl_s > 0")
        self.max_entries, self.ttl_s = max_entries, ttl_s
        self._observer = observer or _NullObserver()
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._inflight: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K, default: V | None = None) -> V | None:
        """Counts a hit or a miss; an expired entry is evicted and counts as a miss."""
        entry = self._data.get(key)
        if entry is not None:
            expires, value = entry
            if expires > self._clock():
                self._data.move_to_end(key)
                self._observer.hit()
                return value
            del self._data[key]
            self._observer.evicted(1)
            self._observer.set_entries(len(self._data))
        self._observer.miss()
        return default

    def put(self, key: K, value: V) -> None:
        self._data[key] = (self._clock() + self.ttl_s, value)
        self._data.move_to_end(key)
        evicted = 0
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
            evicted += 1
        if evicted:
            self._observer.evicted(evicted)
        self._observer.set_entries(len(self._data))

    def clear(self) -> None:
        self._data.clear()
        self._observer.set_entries(0)

    async def get_or_load(self, key: K, loader: Callable[[], Awaitable[V]]) -> V:
        """Cached value, or the result of ``loader()`` — run once however many callers miss together."""
        value = self.get(key, _MISSING)  # type: ignore[arg-type]
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        pending = self._inflight.get(key)
        if pending is not None:
            try:
                # shield: one impatient (cancelled) caller must not cancel the load for everyone else.
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # this caller itself is being cancelled
                # The loading caller was cancelled (e.g. its request's sibling step timed out) and its
                # load died with it; that is no reason to fail this request: load again. Re-raising
                # here answered these waiters with a 500 (seen in the pool_starvation drill).
                return await self.get_or_load(key, loader)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await loader()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting, and that is fine
            raise
        finally:
            self._inflight.pop(key, None)
        self.put(key, value)
        future.set_result(value)
        return value
