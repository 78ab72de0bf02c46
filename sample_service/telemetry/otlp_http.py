"""The SDK's OTLP/HTTP exporters with the encoding step swapped for ``otlp_wire`` (≈10x cheaper).

Everything else is the SDK's: endpoint/headers/timeout/compression from ``OTEL_EXPORTER_OTLP_*``,
the HTTP client with its bounded retry and back-off, the size limit, the exporter self-metrics
(``otel.sdk.exporter.*``), shutdown. ``export`` is the SDK's method (1.45.1, pinned) with one line
changed; it reads the exporter's private ``_metrics``/``_client``/``_max_request_size``, which the
tests exercise against a real receiver and a dead port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError, _is_request_too_large
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from sample_service.telemetry import otlp_wire

_logger = logging.getLogger(__name__)
_STATUS_CODE = "http.response.status_code"


def _export(
    exporter: Any,
    batch: Sequence[Any],
    encode: Callable[[Sequence[Any]], bytes],
    what: str,
    success: Any,
    failure: Any,
) -> Any:
    if exporter._shutdown:
        _logger.warning("Exporter already shutdown, ignoring batch")
        return failure
    with exporter._metrics.export_operation(len(batch)) as result:
        try:
            serialized = encode(batch)
        except Exception as error:
            _logger.error("Failed to encode %s batch: %s", what, error)
            result.error = error
            return failure
        if _is_request_too_large(serialized, exporter._max_request_size):
            _logger.warning(
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


class WireOTLPSpanExporter(OTLPSpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return _export(
            self,
            spans,
            otlp_wire.encode_spans,
            "span",  # type: ignore[no-any-return]
            SpanExportResult.SUCCESS,
            SpanExportResult.FAILURE,
        )


class WireOTLPLogExporter(OTLPLogExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return _export(
            self,
            batch,
            otlp_wire.encode_logs,
            "logs",  # type: ignore[no-any-return]
            LogRecordExportResult.SUCCESS,
            LogRecordExportResult.FAILURE,
        )
