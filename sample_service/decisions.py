"""Decision events, published in the background so the response never waits for the write.

A bounded queue between the request and one writer task: when the writer falls behind (slow DB,
pool starvation) events are dropped and counted — ``decision_events_total{outcome="dropped"}`` —
instead of growing memory without bound or pushing back on request latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sample_service.models import DecisionEvent

log = logging.getLogger(__name__)


class DecisionMetrics(Protocol):
    def decision_event(self, outcome: str) -> None: ...


class DecisionPublisher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], metrics: DecisionMetrics, *,
                 max_queue: int, batch_size: int) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="decision-publisher")

    def publish(self, event: dict[str, Any]) -> bool:
        """Never blocks, never raises: False (and a counted drop) when the queue is full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._metrics.decision_event("dropped")
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._sessions() as session, session.begin():
                    await session.execute(insert(DecisionEvent), batch)
                outcome = "published"
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing %d decision events failed", len(batch))
                outcome = "failed"
            for _ in batch:
                self._metrics.decision_event(outcome)
                self._queue.task_done()

    async def stop(self, drain_timeout_s: float) -> None:
        """Give queued events ``drain_timeout_s`` to be written, then stop the writer regardless."""
        if self._task is None:
            return
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_timeout_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None
