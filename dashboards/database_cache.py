"""Database & cache: connection pool health, statement latency and the rules cache."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards import common as c
from dashboards.panels import database as p

SPEC = c.DashboardSpec(
    uid="o11y-database-cache",
    title="Database & cache",
    description="Connection pool (used/idle/max, saturation, pending, wait, timeouts), statements and cache.",
    tags=("database", "cache"),
)


def build() -> dm.Dashboard:
    d = c.base_dashboard(SPEC)
    d = c.add_row(
        d,
        "Connection pool",
        [
            p.pool_connections_timeseries(),
            p.pool_saturation_gauge(),
            p.pool_saturation_timeseries(),
            p.pool_pending_requests_timeseries(),
            p.pool_wait_time_timeseries(),
            p.pool_use_time_timeseries(),
            p.pool_timeouts_timeseries(),
        ],
    )
    d = c.add_row(
        d, "Statements", [p.query_latency_by_operation_timeseries(), p.query_rate_by_operation_timeseries()]
    )
    d = c.add_row(
        d,
        "Cache",
        [p.cache_hit_ratio_timeseries(), p.cache_requests_timeseries(), p.cache_entries_timeseries()],
    )
    return c.finalize(d.build())
