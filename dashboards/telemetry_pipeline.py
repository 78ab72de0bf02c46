"""Telemetry pipeline: SDK queues and exports, the collector's stages, ingestion by the backends."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards import common as c
from dashboards.panels import pipeline as p

SPEC = c.DashboardSpec(
    uid="o11y-telemetry-pipeline",
    title="Telemetry pipeline",
    description="Tell 'the service is slow' from 'the telemetry is lying': SDK, collector and backends.",
    tags=("telemetry", "collector"),
)


def build() -> dm.Dashboard:
    d = c.base_dashboard(SPEC)
    d = c.add_row(d, "Scrape health", [p.scrape_targets_up_stat()])
    d = c.add_row(d, "Do the signals agree?", [p.signal_agreement_timeseries(), p.logs_indexed_timeseries()])
    d = c.add_row(
        d,
        "SDK (in the service)",
        [
            p.sdk_span_queue_timeseries(),
            p.sdk_log_queue_timeseries(),
            p.sdk_dropped_timeseries(),
            p.sdk_export_duration_timeseries(),
            p.sdk_export_failures_timeseries(),
        ],
    )
    d = c.add_row(
        d,
        "Collector",
        [
            p.collector_signal_timeseries("spans"),
            p.collector_signal_timeseries("log_records"),
            p.collector_refusals_timeseries(),
            p.collector_queue_timeseries(),
        ],
    )
    d = c.add_row(d, "Backends", [p.tempo_service_graph_timeseries(), p.scrape_gaps_timeseries()])
    return c.finalize(d.build())
