"""SDK self-metrics on /metrics under the catalog's names; queue drops visible."""

from __future__ import annotations

import pytest

from sample_service.settings import Settings
from sample_service.telemetry import catalog, setup_telemetry
from tests.unit.test_telemetry_support import OPENMETRICS, poll_until, unused_port


def scrape(tel) -> dict:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    body, _ = tel.metrics_response(OPENMETRICS)
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def test_sdk_metrics_exposed_with_catalog_names_and_drops_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{unused_port()}")
    # A tiny queue and a dead collector: the worker is stuck retrying, so the queue overflows.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # seconds, in the Python SDK
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "2")
    tel = setup_telemetry(Settings(shutdown_timeout_s=1.0, log_json_stdout=False,
                                   telemetry_global_providers=False))
    try:
        import logging

        for i in range(40):
            tel.tracer.start_span(f"s{i}").end()
            logging.getLogger("tests.sdk").warning("record %d", i)

        def exporter_failed() -> dict | None:
            families = scrape(tel)
            for metric in (catalog.SDK_SPANS_EXPORTED, catalog.SDK_LOGS_EXPORTED):
                exported = families.get(metric.prom.removesuffix("_total"), [])
                if not any(s.labels.get("error_type") for s in exported):
                    return None
            return families

        families = poll_until(exporter_failed, "failed span and log exports to show", timeout=10)
        sdk_names = {m.prom.removesuffix("_total") for m in catalog.all_metrics() if m.source == "sdk"}
        assert sdk_names - set(families) == set()
        for metric in (m for m in catalog.all_metrics() if m.source == "sdk"):
            seen = {k for s in families[metric.prom.removesuffix("_total")] for k in s.labels}
            assert set(metric.labels) <= seen, (metric.prom, seen)

        def value(metric: catalog.Metric, **labels: str) -> float:
            family = metric.prom.removesuffix("_total")
            return sum(
                s.value
                for s in families[family]
                if s.name in (metric.prom, f"{metric.prom}_total")
                and all(s.labels.get(k) == v for k, v in labels.items())
            )

        assert value(catalog.SDK_SPAN_QUEUE_CAPACITY) == 4
        assert value(catalog.SDK_LOG_QUEUE_CAPACITY) == 8
        assert value(catalog.SDK_SPAN_PROCESSED, error_type="queue_full") > 0
        [queue_sample] = families[catalog.SDK_SPAN_QUEUE_SIZE.prom]
        assert 0 <= queue_sample.value <= 4
        assert queue_sample.labels["otel_component_type"] == "batching_span_processor"
        durations = families[catalog.SDK_EXPORT_DURATION.prom]
        assert any(s.name.endswith("_count") and s.value >= 1 for s in durations)
    finally:
        tel.shutdown()
