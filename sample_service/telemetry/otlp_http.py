"""The SDK's OTLP/HTTP exporters with the encoding step swapped for ``otlp_wire`` (≈10x cheaper).

Everything else is the SDK's: endpoint/headers/timeout/compression from ``OTEL_EXPORTER_OTLP_*``,
the HTTP client with its bounded retry and back-off, the size limit, the exporter self-metrics
(``otel.sdk.exporter.*``), shutdown. ``export`` is the SDK's method (1.45.1, pinned) with one line
changed (``compat.export_encoded``: it reads the exporter's private fields, so ``providers`` uses
these classes only with the checked exporter version), exercised against a real receiver and a dead port.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from sample_service.telemetry import otlp_wire
from sample_service.telemetry.compat import LogRecordExportResult, ReadableLogRecord, export_encoded
from sample_service.telemetry.compat import OTLPHttpLogExporter as OTLPLogExporter


class WireOTLPSpanExporter(OTLPSpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return export_encoded(
            self,
            spans,
            otlp_wire.encode_spans,
            "span",  # type: ignore[no-any-return]
            SpanExportResult.SUCCESS,
            SpanExportResult.FAILURE,
        )


class WireOTLPLogExporter(OTLPLogExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return export_encoded(
            self,
            batch,
            otlp_wire.encode_logs,
            "logs",  # type: ignore[no-any-return]
            LogRecordExportResult.SUCCESS,
            LogRecordExportResult.FAILURE,
        )
