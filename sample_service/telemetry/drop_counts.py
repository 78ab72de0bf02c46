"""Cheap drop counting for the SDK batch processors: count in a dict, hand to the SDK at scrape time.

Why: with the collector down every span and access record is a drop, and the SDK counts each one
at once with ``ProcessorMetrics.drop_items`` — an OTel ``Counter.add`` (attribute lookup, locks,
≈15-30 µs) for *every* drop, on the thread that emitted: the event loop for spans. That made
"collector down" cost more per request than "collector up" (issue 5). Here a drop is an integer
add under an uncontended lock; the totals go to the same SDK counter (same metric, same
attributes) just before each scrape and at shutdown, so what /metrics shows is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sample_service.telemetry import compat


class DeferredDropCounts:
    """Wraps the SDK's ``ProcessorMetrics`` of one batch processor; ``flush()`` publishes the drops."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        with self._lock:
            self._pending[error_type] = self._pending.get(error_type, 0) + count

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for error_type, count in pending.items():
            self._inner.drop_items(count, error_type)

    # the rest of the ProcessorMetrics surface is cheap (per batch, not per item): passed through
    def finish_items(self, count: int) -> None:
        self._inner.finish_items(count)

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self._inner.register_queue_size(get_queue_size)


def defer_drop_counts(
    processor: Any, allowed: compat.Allowed = compat.private_api
) -> Callable[[], None] | None:
    """Swap a Batch{Span,LogRecord}Processor's metrics for ``DeferredDropCounts``; returns its flush
    (None when this SDK has no such field: then drops are counted the SDK's way)."""
    found = compat.batch_processor_metrics(processor, allowed)
    if found is None:
        return None
    batch, inner = found
    deferred = DeferredDropCounts(inner)
    compat.set_batch_processor_metrics(batch, deferred)
    return deferred.flush
