"""Service latency: the on-call home. Is the service healthy, which route is slow, which trace shows why."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import common as c
from dashboards.panels import service as p
from sample_service.telemetry.catalog import HTTP_SERVER_DURATION, SLO_AVAILABILITY, SLO_LATENCY, L

SPEC = c.DashboardSpec(
    uid=p.SERVICE_LATENCY_UID,
    title="Service latency",
    description="RED metrics, latency percentiles with exemplars, SLOs, slowest routes and traces.",
    tags=("latency", "red", "slo"),
)
# Min duration choices for the slowest-traces search; the default is half the latency objective.
MIN_DURATIONS = ("0ms", "100ms", "250ms", "500ms", "1s", "2s", "5s")
DEFAULT_MIN_DURATION = f"{c.LATENCY_SLO_S * 1000 / 2:g}ms"


def route_variable() -> db.QueryVariable:
    q = f"label_values({HTTP_SERVER_DURATION.count}, {L.HTTP_ROUTE})"
    return (
        db.QueryVariable(p.ROUTE_VAR)
        .label("Route")
        .description("http.route the Traces row shows; a click on a route in Slowest routes sets it.")
        .datasource(c.PROMETHEUS)
        .query(q)
        .definition(q)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        .multi(False)
        .include_all(True)
        .all_value(".*")
    )


def min_duration_variable() -> db.CustomVariable:
    return (
        db.CustomVariable(p.MIN_DURATION_VAR)
        .label("Min duration")
        .description("Slowest traces shows server traces at least this long.")
        .values(",".join(MIN_DURATIONS))
        .current(dm.VariableOption(selected=True, text=DEFAULT_MIN_DURATION, value=DEFAULT_MIN_DURATION))
        .multi(False)
        .include_all(False)
    )


def build() -> dm.Dashboard:
    if DEFAULT_MIN_DURATION not in MIN_DURATIONS:
        raise ValueError(f"default min duration {DEFAULT_MIN_DURATION} is not one of {MIN_DURATIONS}")
    d = c.base_dashboard(SPEC, extra_variables=[route_variable(), min_duration_variable()])
    d = d.annotation(p.restarts_and_deploys_annotation())
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
        "SLO: 99 % without 5xx, 99 % within the latency objective",
        [p.error_budget_stat(SLO_AVAILABILITY), p.error_budget_stat(SLO_LATENCY), p.burn_rate_timeseries()],
    )
    d = c.add_row(
        d,
        "Per route",
        [*(p.route_latency_percentile_timeseries(q) for q in p.PERCENTILES), p.slowest_routes_table()],
    )
    d = c.add_row(d, "Traces", [p.slowest_traces_table(), p.slowest_requests_table()])
    d = c.add_row(d, "Dependencies", [p.partner_latency_timeseries()], collapsed=True)
    return c.finalize(d.build())
