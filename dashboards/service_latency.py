"""Service latency: the on-call home. Is the service healthy, which route is slow, which trace shows why."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards import common as c
from dashboards.panels import service as p

SPEC = c.DashboardSpec(
    uid="o11y-service-latency",
    title="Service latency",
    description="RED metrics, latency percentiles with exemplars, slowest routes and traces of one service.",
    tags=("latency", "red"),
)


def build() -> dm.Dashboard:
    d = c.base_dashboard(SPEC)
    d = c.add_row(
        d,
        "Overview",
        [p.request_rate_stat(), p.error_ratio_stat(), p.p99_latency_stat(), p.active_requests_stat()],
    )
    d = c.add_row(
        d,
        "Latency and traffic",
        [
            p.latency_percentiles_timeseries(),
            p.latency_heatmap(),
            p.request_rate_timeseries(),
            p.error_ratio_timeseries(),
        ],
    )
    d = c.add_row(
        d,
        "Per route",
        [*(p.route_latency_percentile_timeseries(q) for q in p.PERCENTILES), p.slowest_routes_table()],
    )
    d = c.add_row(d, "Traces", [p.slowest_traces_table()])
    d = c.add_row(d, "Dependencies", [p.partner_latency_timeseries()], collapsed=True)
    return c.finalize(d.build())
