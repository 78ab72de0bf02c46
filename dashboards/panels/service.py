"""Panels of the Service latency dashboard (the on-call home): RED, percentiles, heatmap, slow routes/traces.

Every function returns one panel builder; the dashboard module only places them.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import heatmap, stat, table
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards import common as c
from sample_service.telemetry.catalog import (
    HTTP_CLIENT_DURATION,
    HTTP_SERVER_ACTIVE,
    HTTP_SERVER_DURATION,
    A,
    L,
)

PERCENTILES = (0.5, 0.9, 0.95, 0.99)
_ALL = c.job_matchers()
_5XX = c.job_matchers(**{L.HTTP_STATUS: "=~" + c.SERVER_ERROR_STATUS_RE})


def _pct(q: float) -> str:
    return f"p{q * 100:g}"


def _request_rate(window: str = c.RATE_WINDOW) -> str:
    return c.sum_rate(HTTP_SERVER_DURATION.count, _ALL, window=window)


def _error_ratio(window: str = c.RATE_WINDOW) -> str:
    errors = c.sum_rate(HTTP_SERVER_DURATION.count, _5XX, window=window)
    return c.ratio(c.zero_if_absent(errors, _request_rate(window)), _request_rate(window))


# --- headline stats ------------------------------------------------------------------------------
def request_rate_stat() -> stat.Panel:
    return (
        stat.Panel()
        .title("Requests / s")
        .description(
            "Requests per second handled by the service (all routes), from the HTTP server histogram's count."
        )
        .unit(c.REQ_PER_SEC)
        .datasource(c.PROMETHEUS)
        .thresholds(c.informational())
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(6)
        .height(5)
        .with_target(c.prom_target(_request_rate(), "req/s"))
    )


def error_ratio_stat() -> stat.Panel:
    return (
        stat.Panel()
        .title("Error ratio (5xx)")
        .description(
            "Share of requests answered with a 5xx status. 0 is shown (not 'No data') while requests flow "
            f"and none failed. Red at the {c.ERROR_RATIO_SLO:.0%} error budget."
        )
        .unit(c.PERCENT_UNIT)
        .datasource(c.PROMETHEUS)
        .thresholds(c.ratio_bad_above(c.ERROR_RATIO_SLO / 2, c.ERROR_RATIO_SLO))
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .decimals(2)
        .span(6)
        .height(5)
        .with_target(c.prom_target(_error_ratio(), "error ratio"))
    )


def p99_latency_stat() -> stat.Panel:
    return (
        stat.Panel()
        .title("p99 latency")
        .description(
            "99th percentile request duration over all routes. "
            f"Yellow from half the {c.LATENCY_SLO_S * 1000:g} ms objective, red at it."
            + c.percentile_accuracy_note()
        )
        .unit(c.SECONDS)
        .datasource(c.PROMETHEUS)
        .thresholds(c.latency_thresholds())
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(6)
        .height(5)
        .with_target(c.prom_target(c.quantile_by(HTTP_SERVER_DURATION, 0.99, (), _ALL), "p99"))
    )


def active_requests_stat() -> stat.Panel:
    return (
        stat.Panel()
        .title("In-flight requests")
        .description(
            "Requests being handled right now. Growing while throughput is flat means requests are "
            "queueing (pool starvation, a blocked event loop)."
        )
        .unit(c.COUNT)
        .datasource(c.PROMETHEUS)
        .thresholds(c.steps(c.GREEN, (20, c.YELLOW), (50, c.RED)))
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(6)
        .height(5)
        .with_target(c.prom_target(c.sum_by(HTTP_SERVER_ACTIVE.series, _ALL), "in flight"))
    )


# --- time series -----------------------------------------------------------------------------
def request_rate_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Request rate by route",
        "Requests per second per route (http.route), stacked: the total is the service's throughput.",
        c.REQ_PER_SEC,
        c.informational(),
        [
            c.prom_target(
                c.sum_rate(HTTP_SERVER_DURATION.count, _ALL, (L.HTTP_ROUTE,)), c.legend(L.HTTP_ROUTE)
            )
        ],
        stacked=True,
    )


def error_ratio_timeseries() -> ts.Panel:
    per_route_errors = c.sum_rate(HTTP_SERVER_DURATION.count, _5XX, (L.HTTP_ROUTE,))
    per_route_all = c.sum_rate(HTTP_SERVER_DURATION.count, _ALL, (L.HTTP_ROUTE,))
    return c.timeseries_panel(
        "Error ratio (5xx) by route",
        "Share of each route's requests answered with 5xx. Routes without errors show 0, so a missing "
        "line means the route got no traffic, not that it is healthy. Dashed line: the error budget.",
        c.PERCENT_UNIT,
        c.ratio_bad_above(c.ERROR_RATIO_SLO / 2, c.ERROR_RATIO_SLO),
        [
            c.prom_target(
                c.ratio(c.zero_if_absent(per_route_errors, per_route_all), per_route_all),
                c.legend(L.HTTP_ROUTE),
            )
        ],
        show_thresholds=True,
    )


def latency_percentiles_timeseries() -> ts.Panel:
    targets = [
        # Exemplars on one query only: all four read the same histogram, so more would draw each
        # exemplar four times.
        c.prom_target(
            c.quantile_by(HTTP_SERVER_DURATION, q, (), _ALL), _pct(q), c.ref_id(i), exemplar=(q == 0.99)
        )
        for i, q in enumerate(PERCENTILES)
    ]
    return c.timeseries_panel(
        "Latency p50 / p90 / p95 / p99 (all routes)",
        "Request duration percentiles over all routes. Dots are exemplars: click one to open that "
        "request's trace in Tempo. Dashed lines: half the objective and the objective."
        + c.percentile_accuracy_note(),
        c.SECONDS,
        c.latency_thresholds(),
        targets,
        show_thresholds=True,
    )


def route_latency_percentile_timeseries(q: float) -> ts.Panel:
    return c.timeseries_panel(
        f"Latency {_pct(q)} by route",
        f"{_pct(q)} request duration per route, with exemplars (dots) linking to traces in Tempo. "
        "Compare with the all-routes panel to see which route moves the tail." + c.percentile_accuracy_note(),
        c.SECONDS,
        c.latency_thresholds(),
        [
            c.prom_target(
                c.quantile_by(HTTP_SERVER_DURATION, q, (L.HTTP_ROUTE,), _ALL),
                c.legend(L.HTTP_ROUTE),
                exemplar=True,
            )
        ],
        width=6,
    )


def latency_heatmap() -> heatmap.Panel:
    return (
        heatmap.Panel()
        .title("Latency distribution (heatmap)")
        .description(
            "Requests per second in each duration bucket. Bimodal shapes (a second band above the main "
            "one) are typical of cache misses, pool waits and N+1 queries. Exemplars (dots) link to traces."
        )
        .unit(c.SECONDS)
        .datasource(c.PROMETHEUS)
        .thresholds(c.informational())
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(c.SECONDS).decimals(3))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(hm.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .fill("dark-orange")
            .reverse(False)
        )
        .exemplars_color("rgba(0,211,255,0.7)")
        .cell_gap(1)
        .span(12)
        .height(8)
        .with_target(
            c.prom_target(
                c.sum_rate(HTTP_SERVER_DURATION.series, _ALL, ("le",)),
                "{{le}}",
                fmt=PromQueryFormat.HEATMAP,
                exemplar=True,
            )
        )
    )


def partner_latency_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Partner API latency p50 / p99",
        "Duration of outgoing HTTP calls (the partner hop) per server address. When the service's p99 "
        "follows this line, the tail comes from the dependency, not from our code."
        + c.percentile_accuracy_note(),
        c.SECONDS,
        c.latency_thresholds(),
        [
            c.prom_target(
                c.quantile_by(HTTP_CLIENT_DURATION, q, (L.SERVER_ADDRESS,), _ALL),
                f"{_pct(q)} " + c.legend(L.SERVER_ADDRESS),
                c.ref_id(i),
                exemplar=(q == 0.99),
            )
            for i, q in enumerate((0.5, 0.99))
        ],
    )


# --- tables --------------------------------------------------------------------------------------
def slowest_routes_table() -> table.Panel:
    """One row per route over the whole time range: percentiles, request rate and error ratio."""
    by = (L.HTTP_ROUTE,)
    targets = [
        c.prom_target(
            c.quantile_by(HTTP_SERVER_DURATION, q, by, _ALL, window=c.RANGE_WINDOW),
            _pct(q),
            c.ref_id(i),
            instant=True,
            fmt=PromQueryFormat.TABLE,
        )
        for i, q in enumerate(PERCENTILES)
    ]
    targets.append(
        c.prom_target(
            c.sum_rate(HTTP_SERVER_DURATION.count, _ALL, by, window=c.RANGE_WINDOW),
            "req/s",
            c.ref_id(len(targets)),
            instant=True,
            fmt=PromQueryFormat.TABLE,
        )
    )
    rename = {f"Value #{c.ref_id(i)}": _pct(q) for i, q in enumerate(PERCENTILES)}
    rename[f"Value #{c.ref_id(len(PERCENTILES))}"] = "req/s"
    panel = (
        table.Panel()
        .title("Slowest routes")
        .description(
            "Per route over the selected time range: p50/p90/p95/p99 duration and request rate, sorted by "
            "p99. Percentile cells turn yellow/red against the latency objective."
            + c.percentile_accuracy_note()
        )
        .unit(c.SECONDS)
        .datasource(c.PROMETHEUS)
        .thresholds(c.latency_thresholds())
        .cell_options(cm.TableColoredBackgroundCellOptions())
        .sort_by([cb.TableSortByFieldState().display_name("p99").desc(True)])
        .span(12)
        .height(8)
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": rename, "indexByName": {}},
            )
        )
        .override_by_name(
            "req/s",
            [
                dm.DynamicConfigValue(id_val="unit", value=c.REQ_PER_SEC),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "auto"}),
            ],
        )
    )
    for t in targets:
        panel = panel.with_target(t)
    return panel


def slowest_traces_table() -> table.Panel:
    query = f'{{{c.TRACEQL_SERVICE_NAME}="{c.SERVICE}" && kind=server}}'
    return (
        table.Panel()
        .title("Slowest recent traces")
        .description(
            "The 50 most recent server traces of the service found by TraceQL in Tempo, sorted by duration "
            "(slowest first). Click a trace id to open the whole trace in Tempo; its spans show which "
            f'function took the time. Add `&& span.{A.HTTP_ROUTE}="/v1/..."` to the query for one route.'
        )
        .unit("ms")  # Tempo's search frame reports trace duration in milliseconds
        .datasource(c.TEMPO)
        .thresholds(c.latency_thresholds(c.LATENCY_SLO_S * 1000))
        .sort_by([cb.TableSortByFieldState().display_name("Duration").desc(True)])
        .span(12)
        .height(8)
        .with_target(c.traceql_target(query, limit=50))
    )
