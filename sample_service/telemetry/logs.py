"""Logging: stdlib ``logging`` → deque → dispatcher thread → JSON lines on stdout + OTel → OTLP.

The request path does the least possible: the handler on the root logger stamps the current
trace_id/span_id on the record (three ints, no formatting) and appends it to a deque. A
dispatcher thread does the expensive parts — JSON encoding, the stdout write, translation into an
OTel LogRecord — so neither a slow stdout nor log volume stalls the event loop. Because the OTel
handler then runs on another thread, the stamped ids are re-attached as its context there.

The dispatcher polls every ``flush_interval_s`` and drains everything queued, rather than
blocking on a queue: a blocking ``get`` would wake it (and hand it the GIL) once per record, which
profiling showed as a visible cost per request.

The access record (one per request) skips stdlib logging altogether: the middleware appends one
tuple (timestamp, its span, the route, status, …) to the same deque, and the dispatcher writes its
JSON line from a dict built directly and emits the OTel LogRecord straight through the SDK
``Logger`` (scope ``sample_service.access``), with the span as its context. That removes a
``logging.LogRecord`` per request on the loop and the ``LoggingHandler`` translation (``vars()``
scan, reserved-key filter, context attach/detach) on the dispatcher: ≈50 µs of CPU per request
(``benchmarks/telemetry_cost.py``). The record's content is unchanged: body ``"request"``,
severity INFO, trace/span ids of the server span, the catalog attributes.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from time import time_ns
from typing import IO, Any

import orjson
from opentelemetry.context import attach, detach
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)

from sample_service.telemetry import catalog, compat
from sample_service.telemetry.compat import LoggerProvider, SeverityNumber
from sample_service.telemetry.compat import LogRecord as OTelLogRecord
from sample_service.telemetry.otlp_wire import YIELD_EVERY, yield_gil

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

    def __init__(self, records: deque[Any], capacity: int) -> None:
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


class TraceContextLoggingHandler(compat.AttributeFilteringLoggingHandler):
    """OTel's LoggingHandler, fed from the dispatcher thread with the producer's trace context."""

    hidden = _STAMPS

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


_NO_TRACE_FLAGS = TraceFlags(TraceFlags.DEFAULT)


class AccessLogRecord:
    """One access record as the log processors and exporters read it (the ``ReadableLogRecord``
    surface: ``log_record`` — itself — with the OTel LogRecord fields, ``resource``,
    ``instrumentation_scope``), built on the dispatcher straight from the middleware's tuple.

    Why: the SDK route (an API ``LogRecord``, a ``ReadWriteLogRecord`` with ``BoundedAttributes``,
    then the batch processor's ``copy.copy`` + fresh ``Context`` + ``ReadableLogRecord``) costs
    ≈30 µs per request on the service's one core for a record whose content we fully control.
    Content is the SDK's for the same emit — tests/unit/test_telemetry_logs.py compares the OTLP
    encodings of both."""

    __slots__ = (
        "attributes",
        "instrumentation_scope",
        "observed_timestamp",
        "resource",
        "span_id",
        "timestamp",
        "trace_flags",
        "trace_id",
    )
    severity_text = "INFO"
    severity_number = SeverityNumber.INFO
    body = "request"
    event_name = None
    limits = None
    dropped_attributes = 0

    def __init__(
        self, timestamp: int, ctx: SpanContext | None, attributes: dict[str, Any], resource: Any, scope: Any
    ) -> None:
        self.timestamp = timestamp
        self.observed_timestamp = time_ns()
        if ctx is not None:
            self.trace_id, self.span_id, self.trace_flags = ctx.trace_id, ctx.span_id, ctx.trace_flags
        else:  # what the SDK records with no span in context: the invalid span's zeros
            self.trace_id, self.span_id, self.trace_flags = 0, 0, _NO_TRACE_FLAGS
        self.attributes = attributes
        self.resource = resource
        self.instrumentation_scope = scope

    @property
    def log_record(self) -> AccessLogRecord:
        return self


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
        allowed: compat.Allowed = compat.private_api,
    ) -> None:
        self._records: deque[logging.LogRecord | tuple[Any, ...]] = deque()
        self._capacity = capacity
        self._interval = flush_interval_s
        self._stop = threading.Event()
        self._drain_lock = threading.Lock()
        self.handler = ContextStampingQueueHandler(self._records, capacity)
        self._stream = stream if stream is not None else (sys.stdout.buffer if json_stdout else None)
        self._formatter = JsonLinesFormatter()
        self._iso_second = -1
        self._iso_prefix = ""
        self._otel: TraceContextLoggingHandler | None = None
        self._access_otel: Any = None  # the SDK Logger of the access records
        self._access_queues: list[Any] | None = None  # … or straight into its batch queues
        if logger_provider is not None:
            self._otel = TraceContextLoggingHandler(logger_provider=logger_provider)
            self._otel.addFilter(_NotFromOtel())
            self._access_otel = logger_provider.get_logger(ACCESS_LOGGER)
            direct = compat.batch_log_queues(logger_provider, self._access_otel, allowed)
            if direct is not None:  # with what every AccessLogRecord carries, looked up once
                self._access_queues, self._access_resource, self._access_scope = direct
        self._access_logger = logging.getLogger(ACCESS_LOGGER)  # its level switches access records
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
        with self._drain_lock:  # the dispatcher, or a caller of flush()
            records = self._records
            wrote = 0
            while records:
                self._write(records.popleft())
                wrote += 1
                if not wrote % YIELD_EVERY:
                    yield_gil()  # a drain is a burst of records: let the event loop in between
            # One flush per drained batch, not one syscall per line.
            if wrote and self._stream is not None:
                self._flush_stream()

    def flush(self) -> bool:
        """Write out everything queued now, on the caller's thread (tests, benchmarks; not per request)."""
        self._drain()
        return True

    def _write(self, record: logging.LogRecord | tuple[Any, ...]) -> None:
        if record.__class__ is tuple:
            self._write_access(record)  # type: ignore[arg-type]
            return
        try:
            if self._stream is not None:
                self._stream.write(self._formatter.format(record))  # type: ignore[arg-type]
            if self._otel is not None:
                self._otel.handle(record)  # type: ignore[arg-type]
        except Exception:  # a broken sink must never kill the dispatcher
            self.handler.handleError(record)  # type: ignore[arg-type]

    # --- the access record ------------------------------------------------------------------------
    def access(
        self,
        span_context: SpanContext | None,
        ids: dict[str, str] | None,
        method: str,
        route: str,
        path: str,
        status: int,
        error_type: str,
        seconds: float,
    ) -> None:
        """Queue the request's access record (request path: one tuple, one append).

        ``span_context``: the server span's (the record's trace_id/span_id); ``ids``: the same as
        ``{"trace_id", "span_id"}`` hex strings when the caller already has them (the exemplar)."""
        if not self._access_logger.isEnabledFor(logging.INFO):
            return
        if len(self._records) >= self._capacity:
            self.handler.dropped += 1
            return
        self._records.append((time_ns(), span_context, ids, method, route, path, status, error_type, seconds))

    def _write_access(self, item: tuple[Any, ...]) -> None:
        ts, ctx, ids, method, route, path, status, error_type, seconds = item
        attributes: dict[str, Any] = {
            catalog.A.HTTP_METHOD: method,
            catalog.A.HTTP_ROUTE: route,
            catalog.A.URL_PATH: path,
            catalog.A.HTTP_STATUS: status,
            catalog.A.DURATION_S: seconds,
        }
        if error_type:
            attributes[catalog.A.ERROR_TYPE] = error_type
        valid = ctx is not None and ctx.is_valid
        try:
            if self._stream is not None:
                doc: dict[str, Any] = {
                    "timestamp": self._iso(ts),
                    "level": "INFO",
                    "logger": ACCESS_LOGGER,
                    "message": "request",
                }
                if valid:
                    if ids is not None:
                        doc.update(ids)
                    else:
                        doc["trace_id"] = format(ctx.trace_id, "032x")
                        doc["span_id"] = format(ctx.span_id, "016x")
                doc.update(attributes)
                self._stream.write(orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE))
            if self._access_queues is not None:
                record = AccessLogRecord(
                    ts, ctx if valid else None, attributes,
                    self._access_resource, self._access_scope,
                )
                for queue in self._access_queues:
                    queue.emit(record)
            elif self._access_otel is not None:
                self._access_otel.emit(
                    OTelLogRecord(
                        timestamp=ts,
                        context=set_span_in_context(NonRecordingSpan(ctx)) if valid else None,
                        severity_text="INFO",
                        severity_number=SeverityNumber.INFO,
                        body="request",
                        attributes=attributes,
                    )
                )
        except Exception:  # a broken sink must never kill the dispatcher
            logging.getLogger(__name__).debug("access record not written", exc_info=True)

    def _iso(self, ts_ns: int) -> str:
        """``datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")``, the seconds part
        formatted once per second (records come in thousands per second)."""
        seconds, ns = divmod(ts_ns, 1_000_000_000)
        if seconds != self._iso_second:
            self._iso_prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._iso_second = seconds
        return f"{self._iso_prefix}.{ns // 1000:06d}+00:00"

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
