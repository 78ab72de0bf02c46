"""Functions: which functions take the request time (span metrics per span name)."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards import common as c
from dashboards.panels import functions as p

SPEC = c.DashboardSpec(
    uid="o11y-functions",
    title="Functions",
    description="Per-function latency, call rate, errors and share of request time from span metrics.",
    tags=("functions", "spanmetrics"),
)


def build() -> dm.Dashboard:
    d = c.base_dashboard(SPEC)
    d = c.add_row(
        d, "Where the time goes", [p.function_time_share_bargauge(), p.function_time_share_timeseries()]
    )
    d = c.add_row(
        d, "Latency by span name", [p.span_latency_percentile_timeseries(q) for q in (0.5, 0.95, 0.99)]
    )
    d = c.add_row(d, "Calls and errors", [p.span_call_rate_timeseries(), p.span_error_ratio_timeseries()])
    d = c.add_row(
        d,
        "Rules engine",
        [
            p.rules_evaluation_latency_timeseries(),
            p.rules_evaluated_per_request_timeseries(),
            p.decision_events_timeseries(),
        ],
        collapsed=True,
    )
    return c.finalize(d.build())
