"""Logging: stdlib ``logging`` → deque → dispatcher thread → JSON lines on stdout + OTel → OTLP.

The request path does the least possible: the handler on the root logger stamps the current
trace_id/span_id on the record (three ints, no formatting) and appends it to a deque. A
dispatcher thread does the expensive parts — JSON encoding, the stdout write, translation into an
OTel LogRecord — so neither a slow stdout nor log volume stalls the event loop. Because the OTel
handler then runs on another thread, the stamped ids are re-attached as its context there.

The dispatcher polls every ``flush_interval_s`` and drains everything queued, rather than
blocking on a queue: a blocking ``get`` would wake it (and hand it the GIL) once per record, which
profiling showed as a visible cost per request.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from opentelemetry.context import attach, detach
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)

from sample_service.telemetry import catalog

ACCESS_LOGGER = "sample_service.access"

# Attributes stamped on each record by the producer side; never exported as attributes.
_TRACE_ID = "otel_trace_id"
_SPAN_ID = "otel_span_id"
_TRACE_FLAGS = "otel_trace_flags"
_STAMPS = (_TRACE_ID, _SPAN_ID, _TRACE_FLAGS)

# Standard LogRecord attributes: everything else on a record is an ``extra`` and is emitted.
_STANDARD = frozenset(vars(logging.LogRecord("n", logging.INFO, "p", 0, "m", None, None)).keys()) | {
    "message",
    "asctime",
    *_STAMPS,
}


class ContextStampingQueueHandler(logging.Handler):
    """Root-logger handler: stamp trace context, enqueue, return. Drops (and counts) when full."""

    def __init__(self, records: deque[logging.LogRecord], capacity: int) -> None:
        super().__init__()
        self._records = records
        self._capacity = capacity
        self.dropped = 0

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # No handler lock: deque.append is atomic, and the lock would serialise every logger.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        ctx = get_current_span().get_span_context()
        if ctx.is_valid:
            record.otel_trace_id = ctx.trace_id
            record.otel_span_id = ctx.span_id
            record.otel_trace_flags = ctx.trace_flags
        else:
            record.otel_trace_id = 0
        if len(self._records) >= self._capacity:
            self.dropped += 1
            return
        self._records.append(record)


class JsonLinesFormatter:
    """One JSON object per record: timestamp, level, logger, message, trace_id, span_id, extras."""

    def format(self, record: logging.LogRecord) -> bytes:
        doc: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, _TRACE_ID, 0)
        if trace_id:
            doc["trace_id"] = format(trace_id, "032x")
            doc["span_id"] = format(record.otel_span_id, "016x")  # type: ignore[attr-defined]
        for key, value in vars(record).items():
            if key not in _STANDARD:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = logging.Formatter().formatException(record.exc_info)
        return orjson.dumps(doc, default=str, option=orjson.OPT_APPEND_NEWLINE)


class TraceContextLoggingHandler(LoggingHandler):
    """OTel's LoggingHandler, fed from the dispatcher thread with the producer's trace context."""

    def _get_attributes(self, record: logging.LogRecord) -> tuple[dict[str, Any], str | None]:
        attributes, event_name = super()._get_attributes(record)
        for key in _STAMPS:
            attributes.pop(key, None)
        return attributes, event_name

    def emit(self, record: logging.LogRecord) -> None:
        trace_id = getattr(record, _TRACE_ID, 0)
        if not trace_id:
            super().emit(record)
            return
        span_context = SpanContext(
            trace_id,
            getattr(record, _SPAN_ID),
            is_remote=False,
            trace_flags=TraceFlags(getattr(record, _TRACE_FLAGS)),
        )
        token = attach(set_span_in_context(NonRecordingSpan(span_context)))
        try:
            super().emit(record)
        finally:
            detach(token)

    def flush(self) -> None:
        # The base class starts a force_flush thread per call (logging.shutdown calls flush at exit):
        # shutdown is Telemetry's job, bounded, so nothing to do here.
        pass


class _NotFromOtel(logging.Filter):
    """The SDK's own warnings (e.g. "failed to export") must not feed back into the export queue."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("opentelemetry")


class LogPipeline:
    """Owns the root-logger handler, the dispatcher thread and the sinks; ``close`` undoes it all."""

    def __init__(
        self,
        *,
        level: str,
        json_stdout: bool,
        logger_provider: LoggerProvider | None,
        stream: IO[bytes] | None = None,
        capacity: int = 10_000,
        flush_interval_s: float = 0.1,
    ) -> None:
        self._records: deque[logging.LogRecord] = deque()
        self._interval = flush_interval_s
        self._stop = threading.Event()
        self.handler = ContextStampingQueueHandler(self._records, capacity)
        self._stream = stream if stream is not None else (sys.stdout.buffer if json_stdout else None)
        self._formatter = JsonLinesFormatter()
        self._otel: TraceContextLoggingHandler | None = None
        if logger_provider is not None:
            self._otel = TraceContextLoggingHandler(logger_provider=logger_provider)
            self._otel.addFilter(_NotFromOtel())
        self._thread = threading.Thread(target=self._dispatch, name="o11y-log-dispatch", daemon=True)
        self._thread.start()
        root = logging.getLogger()
        root.addHandler(self.handler)
        root.setLevel(level.upper())

    def _dispatch(self) -> None:
        while not self._stop.wait(self._interval):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        records = self._records
        wrote = False
        while records:
            self._write(records.popleft())
            wrote = True
        # One flush per drained batch, not one syscall per line.
        if wrote and self._stream is not None:
            self._flush_stream()

    def _write(self, record: logging.LogRecord) -> None:
        try:
            if self._stream is not None:
                self._stream.write(self._formatter.format(record))
            if self._otel is not None:
                self._otel.handle(record)
        except Exception:  # a broken sink must never kill the dispatcher
            self.handler.handleError(record)

    def _flush_stream(self) -> None:
        try:
            self._stream.flush()  # type: ignore[union-attr]
        except Exception:
            pass

    def close(self, timeout_s: float) -> bool:
        """Detach from the root logger, drain what is queued, stop. True when drained in time."""
        logging.getLogger().removeHandler(self.handler)
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


def emit_access_record(
    logger: logging.Logger, method: str, route: str, path: str, status: int, seconds: float
) -> None:
    """One INFO record per request. Built directly: ``logger.info`` would walk the stack for the caller."""
    if not logger.isEnabledFor(logging.INFO):
        return
    record = logging.LogRecord(logger.name, logging.INFO, "", 0, "request", None, None)
    record.__dict__.update(
        {
            catalog.A.HTTP_METHOD: method,
            catalog.A.HTTP_ROUTE: route,
            catalog.A.URL_PATH: path,
            catalog.A.HTTP_STATUS: status,
            catalog.A.DURATION_S: seconds,
        }
    )
    logger.handle(record)
