"""Logs: exact percentiles from access logs beside the histogram ones, error logs, logs of a trace."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import common as c
from dashboards.panels import logs as p

SPEC = c.DashboardSpec(
    uid="o11y-logs",
    title="Logs",
    description="Access-log percentiles (exact) vs histogram ones, errors, trace search.",
    tags=("logs", "opensearch"),
)


def trace_id_variable() -> db.TextBoxVariable:
    return (
        db.TextBoxVariable(p.TRACE_ID_VAR)
        .label("Trace id")
        .description("A trace id (32 hex characters) to show that request's logs; empty shows recent ones.")
        .default_value("")
    )


def build() -> dm.Dashboard:
    d = c.base_dashboard(SPEC, extra_variables=[trace_id_variable()])
    d = c.add_row(
        d,
        "Latency: exact vs interpolated",
        [
            p.log_latency_percentiles_timeseries(),
            p.histogram_latency_percentiles_timeseries(),
            p.p99_exact_vs_interpolated_timeseries(),
        ],
    )
    d = c.add_row(
        d, "Volume and errors", [p.access_logs_by_status_timeseries(), p.error_log_count_timeseries()]
    )
    d = c.add_row(d, "Error logs", [p.error_logs_logs()])
    d = c.add_row(d, "Logs of a trace", [p.logs_by_trace_id_logs()])
    return c.finalize(d.build())
