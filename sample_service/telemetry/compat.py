"""Every private name of a third-party library the telemetry package uses, in one place.

The lean pieces read or swap private fields of the OTel SDK, its OTLP/HTTP exporter, SQLAlchemy,
httpx and prometheus-client. Those fields can move in any release. So each helper here first asks
``private_api(dist)``: True only when the installed distribution is exactly the version the names
were checked against (``CHECKED``; the equivalence tests in tests/unit are the gate for bumping
it). On any other version it logs one warning naming the library and both versions, and the caller
takes the stock path for that piece — the SDK's tracer, span and OTLP exporters, the SDK's drop
counting and log route, prometheus-client's own ``observe``, the contrib httpx instrumentation, no
pool-wait metric: slower or less detailed, never broken.

``tests/static/test_private_names.py`` holds the count of private names outside this module.

Not guarded, because the stock path needs them as much as the lean one: the logs signal, which the
OTel API and SDK publish only under ``_logs`` modules (re-exported below).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from operator import attrgetter
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber, get_logger_provider, set_logger_provider
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError

try:  # private: an SDK without them keeps the SDK span / exporter (lean_span_usable, wire_encoder_usable)
    from opentelemetry.attributes import _clean_attribute_value as clean_attribute_value
except ImportError:  # pragma: no cover - another SDK version
    clean_attribute_value = None  # type: ignore[assignment]
try:
    from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large
except ImportError:  # pragma: no cover - another exporter version
    _is_request_too_large = None  # type: ignore[assignment]
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as OTLPHttpLogExporter
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import Logger as SdkLogger
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)

API = "opentelemetry-api"
SDK = "opentelemetry-sdk"
OTLP_HTTP = "opentelemetry-exporter-otlp-proto-http"
SQLALCHEMY = "sqlalchemy"
HTTPX = "httpx"
PROMETHEUS = "prometheus-client"

__all__ = [
    "CHECKED",
    "BatchLogRecordProcessor",
    "InMemoryLogRecordExporter",
    "LogRecord",
    "LogRecordExportResult",
    "LogRecordExporter",
    "LoggerProvider",
    "LoggingHandler",
    "OTLPHttpLogExporter",
    "ReadableLogRecord",
    "SdkLogger",
    "SeverityNumber",
    "SimpleLogRecordProcessor",
    "get_logger_provider",
    "installed_version",
    "private_api",
    "set_logger_provider",
]

_log = logging.getLogger(__name__)
_STATUS_CODE = "http.response.status_code"

# Distribution → the exact version whose private names this module was checked against.
CHECKED: dict[str, str] = {
    "opentelemetry-api": "1.45.1",
    "opentelemetry-sdk": "1.45.1",
    "opentelemetry-exporter-otlp-proto-http": "1.45.1",
    "sqlalchemy": "2.1.9",
    "httpx": "0.28.1",
    "prometheus-client": "0.26.0",
}


Allowed = Callable[[str], bool]


@functools.cache  # asked per use on some paths: the metadata lookup once per process
def installed_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def private_api(dist: str) -> bool:
    """True when ``dist``'s private names may be used (installed version == the checked one)."""
    return _verdict(dist, installed_version(dist))


def no_private_api(dist: str) -> bool:
    """``O11Y_TELEMETRY_MODE=stock``: every piece takes its stock path, whatever the versions."""
    return False


@functools.cache
def _verdict(dist: str, installed: str | None) -> bool:
    # Cached per (library, version): the warning is logged once per process, not per call.
    checked = CHECKED[dist]
    if installed == checked:
        return True
    _log.warning(
        "%s %s is installed, the telemetry's private-name uses were checked against %s: "
        "the pieces that rely on them take the stock OpenTelemetry path",
        dist, installed or "(none)", checked,
    )
    return False



def wire_encoder_usable(allowed: Allowed = private_api) -> bool:
    """``otlp_wire`` reads the SDK's span fields and ``export_encoded`` the exporter's."""
    return allowed(SDK) and allowed(OTLP_HTTP) and _is_request_too_large is not None


# --- opentelemetry-sdk ----------------------------------------------------------------------------
def quiet_tracer_metrics(tracer: Any, allowed: Allowed = private_api) -> None:
    """Swap the SDK tracer's per-span self-metrics (``otel.sdk.span.*``) for the SDK's no-op ones."""
    if not allowed(SDK) or not hasattr(tracer, "_tracer_metrics"):
        return
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics

    tracer._tracer_metrics = NoOpTracerMetrics()


def lean_span_usable(sdk_tracer: Any, allowed: Allowed = private_api) -> bool:
    """``LeanTracer`` may stand in for this SDK tracer: checked SDK version, tracer not disabled."""
    return allowed(SDK) and clean_attribute_value is not None and bool(sdk_tracer._is_enabled())


def sdk_tracer_scope_and_limits(sdk_tracer: Any) -> tuple[Any, Any]:
    return sdk_tracer._instrumentation_scope, sdk_tracer._span_limits


# (span) → the SDK ReadableSpan's fields, which a LeanSpan mirrors; one C call instead of ten property
# reads that copy (events/links into tuples, attributes into a MappingProxy) — the wire encoder's input.
span_fields = attrgetter("_context", "_parent", "_name", "_kind", "_start_time", "_end_time", "_attributes",
                         "_events", "_links", "_status")


def plain_attributes(attrs: Any) -> Any:
    """The dict inside the SDK's BoundedAttributes (iterating the MutableMapping costs 3x)."""
    return attrs._dict if attrs.__class__ is BoundedAttributes else attrs


def dropped_attributes(span: Any, attrs: Any) -> int:
    # BoundedAttributes counts its drops; a LeanSpan counts them itself.
    return getattr(attrs, "dropped", 0) or getattr(span, "_dropped_attributes", 0)


def batch_processor_metrics(processor: Any, allowed: Allowed = private_api) -> tuple[Any, Any] | None:
    """(the Batch{Span,LogRecord}Processor's worker, its metrics object), or None for the stock path."""
    if not allowed(SDK):
        return None
    batch = getattr(processor, "_batch_processor", None)
    inner = getattr(batch, "_metrics", None)
    if batch is None or inner is None or not hasattr(inner, "drop_items"):
        return None
    return batch, inner


def set_batch_processor_metrics(batch: Any, metrics: Any) -> None:
    batch._metrics = metrics


def bounded_attributes_dict(
    span: Any, allowed: Allowed = private_api
) -> tuple[dict[str, Any], int | None] | None:
    """(the plain dict inside a live SDK span's ``BoundedAttributes``, its count limit) when values
    are not length-limited, else None: then ``set_attributes``."""
    if not allowed(SDK):
        return None
    bounded = getattr(span, "_attributes", None)
    if (
        bounded.__class__ is BoundedAttributes
        and bounded.max_value_len is None
        and getattr(span, "_end_time", 0) is None
    ):
        return bounded._dict, bounded.maxlen
    return None


def parent_based_delegates(sampler: Any, allowed: Allowed = private_api) -> tuple[Any, ...] | None:
    """The five samplers a ``ParentBased`` sampler delegates to, or None (stock path: ask it)."""
    if not allowed(SDK):
        return None
    return (sampler._root, sampler._remote_parent_sampled, sampler._remote_parent_not_sampled,
            sampler._local_parent_sampled, sampler._local_parent_not_sampled)


def batch_log_queues(
    logger_provider: Any, logger: Any, allowed: Allowed = private_api
) -> tuple[list[Any], Any, Any] | None:
    """(the batch queues behind ``logger``, its resource, its scope) when every processor is a plain
    ``BatchLogRecordProcessor`` (the service's set-up), else None: then records take the SDK's route
    (tests' in-memory processors, a disabled SDK, another SDK version)."""
    if not allowed(SDK):
        return None
    multi = getattr(logger_provider, "_multi_log_record_processor", None)
    processors = getattr(multi, "_log_record_processors", None)
    if (
        not processors
        or type(logger) is not SdkLogger
        or not logger._is_enabled()
        or getattr(logger, "_instrumentation_scope", None) is None
        or any(type(p) is not BatchLogRecordProcessor or not hasattr(p, "_batch_processor")
               for p in processors)
    ):
        return None
    return [p._batch_processor for p in processors], logger._resource, logger._instrumentation_scope


class AttributeFilteringLoggingHandler(LoggingHandler):
    """OTel's ``LoggingHandler`` minus the record attributes named in ``hidden`` (ours: the trace
    stamps). The hook is a private method; on another version the stamps stay in the attributes."""

    hidden: tuple[str, ...] = ()

    def _get_attributes(self, record: logging.LogRecord) -> tuple[dict[str, Any], str | None]:
        attributes, event_name = super()._get_attributes(record)
        for key in self.hidden:
            attributes.pop(key, None)
        return attributes, event_name


# --- opentelemetry-exporter-otlp-proto-http ---------------------------------------------------------
def export_encoded(
    exporter: Any,
    batch: Sequence[Any],
    encode: Callable[[Sequence[Any]], bytes],
    what: str,
    success: Any,
    failure: Any,
) -> Any:
    """The SDK exporter's ``export`` (1.45.1) with the encoding step passed in: only with the checked
    exporter version (``providers`` picks the stock exporter otherwise)."""
    if exporter._shutdown:
        _log.warning("Exporter already shutdown, ignoring batch")
        return failure
    with exporter._metrics.export_operation(len(batch)) as result:
        try:
            serialized = encode(batch)
        except Exception as error:
            _log.error("Failed to encode %s batch: %s", what, error)
            result.error = error
            return failure
        if _is_request_too_large(serialized, exporter._max_request_size):
            _log.warning(
                "Dropping %s batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                what,
                len(serialized),
                exporter._max_request_size,
            )
            result.error = RequestPayloadTooLargeError(
                f"Serialized {what} request size {len(serialized)} bytes exceeds max_request_size "
                f"{exporter._max_request_size} bytes."
            )
            return failure
        export_result = exporter._client.export(serialized)
        if not export_result.success:
            result.error = export_result.error
            result.error_attrs = (
                {_STATUS_CODE: export_result.status_code} if export_result.status_code is not None else None
            )
            return failure
    return success


def otlp_grpc_log_exporter_class() -> type:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    return OTLPLogExporter


# --- sqlalchemy -----------------------------------------------------------------------------------
def pool_checkout(pool: Any, allowed: Allowed = private_api) -> Any:
    """The pool's un-wrapped blocking checkout (``_do_get``), or None: already wrapped, or stock path
    (no pool wait-time/pending/timeout metrics)."""
    if not allowed(SQLALCHEMY) or "_do_get" in vars(pool) or not hasattr(pool, "_do_get"):
        return None
    return pool._do_get


def set_pool_checkout(pool: Any, do_get: Any) -> None:
    pool._do_get = do_get


def restore_pool_checkout(pool: Any) -> None:
    if "_do_get" in vars(pool):
        del pool._do_get  # back to the class method


def pool_max_overflow(pool: Any, allowed: Allowed = private_api) -> int | None:
    """A QueuePool's overflow limit (no public accessor), or None: no ``…_max`` gauge on the stock path."""
    return getattr(pool, "_max_overflow", None) if allowed(SQLALCHEMY) else None


# --- httpx ----------------------------------------------------------------------------------------
def composite_parts(propagator: Any, allowed: Allowed = private_api) -> Any:
    """The propagators inside a ``CompositePropagator``, or None (stock path: ``inject`` through it)."""
    return getattr(propagator, "_propagators", None) if allowed(API) else None


def wrap_client_transports(client: Any, wrap: Any, allowed: Allowed = private_api) -> bool:
    """Wrap the client's transport and mounts (the public API takes them only at construction);
    False on the stock path."""
    if not allowed(HTTPX):
        return False
    client._transport = wrap(client._transport)
    client._mounts = {
        pattern: (wrap(transport) if transport is not None else None)
        for pattern, transport in client._mounts.items()
    }
    return True


# --- prometheus-client ----------------------------------------------------------------------------
def histogram_child_state(child: Any, allowed: Allowed = private_api) -> tuple[Any, Any, Any] | None:
    """(upper bounds, bucket values, sum value) of a histogram child, or None (stock ``observe``)."""
    if not allowed(PROMETHEUS):
        return None
    return (getattr(child, "_upper_bounds", None), getattr(child, "_buckets", None),
            getattr(child, "_sum", None))


def child_identity(child: Any) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(metric name, label names, label values) of a prometheus-client child."""
    return child._name, child._labelnames, child._labelvalues
