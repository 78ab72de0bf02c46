"""Deferred drop counting loses nothing: every span emitted into a tiny queue behind a stuck
exporter is either exported or counted as dropped on /metrics — and the drops reach the SDK
counter only when scraped (not per item on the emitting thread)."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sample_service.settings import Settings
from sample_service.telemetry import catalog, setup_telemetry
from sample_service.telemetry.drop_counts import DeferredDropCounts
from tests.unit.test_telemetry_sdk_metrics import scrape


class GatedExporter(SpanExporter):
    """Holds the batch worker inside export() until released: the queue behind it overflows."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def _processed(families: dict, **labels: str) -> float:
    family = catalog.SDK_SPAN_PROCESSED.prom.removesuffix("_total")
    return sum(
        s.value
        for s in families.get(family, [])
        if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_every_span_is_exported_or_counted_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    exporter = GatedExporter()
    tel = setup_telemetry(Settings(shutdown_timeout_s=2.0, log_json_stdout=False, logs_enabled=False,
                                   telemetry_global_providers=False),
                          span_exporter=exporter)
    try:
        processor = tel.tracer_provider._active_span_processor._span_processors[0]  # type: ignore[union-attr]
        deferred = processor._batch_processor._metrics
        assert isinstance(deferred, DeferredDropCounts)

        emitted = 200
        for i in range(emitted):
            tel.tracer.start_span(f"s{i}").end()
        # nothing published yet: the drops wait in the dict until a scrape
        assert sum(deferred._pending.values()) > 0

        exporter.release.set()
        assert tel.tracer_provider is not None
        tel.tracer_provider.force_flush()
        families = scrape(tel)
        dropped = _processed(families, error_type="queue_full")
        assert dropped > 0 and not deferred._pending
        assert exporter.exported + dropped == emitted
    finally:
        tel.shutdown()
