"""Panels of the Service latency dashboard (the on-call home): RED, percentiles, heatmap, slow routes/traces.

Every function returns one panel builder; the dashboard module only places them.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, stat, table
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards import common as c
from dashboards import promql as pq
from dashboards.opensearch_query import OpenSearchQueryBuilder
from dashboards.panels.logs import ACCESS_LOGS, TRACE_ID_VAR
from sample_service.telemetry.catalog import (
    HTTP_CLIENT_DURATION,
    HTTP_SERVER_ACTIVE,
    HTTP_SERVER_DURATION,
    PROCESS_START_TIME,
    SERVICE_BUILD_INFO,
    SLO_AVAILABILITY,
    SLO_LATENCY,
    A,
    L,
    LogField,
    slo_error_ratio,
)

PERCENTILES = (0.5, 0.9, 0.95, 0.99)
# Dashboard uids links point at (each module's SPEC holds the same; a static test checks they resolve).
SERVICE_LATENCY_UID = "o11y-service-latency"
LOGS_UID = "o11y-logs"
ROUTE_VAR = "route"
MIN_DURATION_VAR = "min_duration"
# Tempo's search frame (traces table): the trace id field, and the service name field a link hangs on
# so the trace id keeps the datasource's own "open trace" link.
TEMPO_TRACE_ID_FIELD = "traceID"
TEMPO_SERVICE_FIELD = "traceService"
_ALL = pq.job_matchers()
_5XX = pq.job_matchers(**{L.HTTP_STATUS: "=~" + c.SERVER_ERROR_STATUS_RE})


def _pct(q: float) -> str:
    return f"p{q * 100:g}"


def _request_rate(window: str = pq.RATE_WINDOW) -> str:
    return pq.sum_rate(HTTP_SERVER_DURATION.count, _ALL, window=window)


def _error_ratio(window: str = pq.RATE_WINDOW) -> str:
    errors = pq.sum_rate(HTTP_SERVER_DURATION.count, _5XX, window=window)
    return pq.ratio(pq.zero_if_absent(errors, _request_rate(window)), _request_rate(window))


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
            "and none failed, and with no traffic at all (nothing failed; Requests / s tells the two apart). "
            f"Red at the {c.ERROR_RATIO_SLO:.0%} error budget."
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
        .with_target(c.prom_target(pq.quantile_by(HTTP_SERVER_DURATION, 0.99, (), _ALL), "p99"))
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
        .with_target(c.prom_target(pq.sum_by(HTTP_SERVER_ACTIVE.series, _ALL), "in flight"))
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
                pq.sum_rate(HTTP_SERVER_DURATION.count, _ALL, (L.HTTP_ROUTE,)), c.legend(L.HTTP_ROUTE)
            )
        ],
        stacked=True,
    )


def error_ratio_timeseries() -> ts.Panel:
    per_route_errors = pq.sum_rate(HTTP_SERVER_DURATION.count, _5XX, (L.HTTP_ROUTE,))
    per_route_all = pq.sum_rate(HTTP_SERVER_DURATION.count, _ALL, (L.HTTP_ROUTE,))
    return c.timeseries_panel(
        "Error ratio (5xx) by route",
        "Share of each route's requests answered with 5xx. Routes without errors show 0, and so does a "
        "route with no traffic in the window (nothing failed); a missing line means the route has not been "
        "called since the service started. Dashed line: the error budget.",
        c.PERCENT_UNIT,
        c.ratio_bad_above(c.ERROR_RATIO_SLO / 2, c.ERROR_RATIO_SLO),
        [
            c.prom_target(
                pq.ratio(pq.zero_if_absent(per_route_errors, per_route_all), per_route_all),
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
            pq.quantile_by(HTTP_SERVER_DURATION, q, (), _ALL), _pct(q), c.ref_id(i), exemplar=(q == 0.99)
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
                pq.quantile_by(HTTP_SERVER_DURATION, q, (L.HTTP_ROUTE,), _ALL),
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
            "Requests per second in each duration bucket: the y axis is the duration (seconds), a cell's "
            "colour the request rate (req/s) in that bucket. Bimodal shapes (a second band above the main "
            "one) are typical of cache misses, pool waits and N+1 queries. Exemplars (dots) link to traces."
        )
        .unit(c.REQ_PER_SEC)
        .datasource(c.PROMETHEUS)
        .thresholds(c.informational())
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(c.SECONDS).decimals(3))
        .cell_values(heatmap.CellValues().unit(c.REQ_PER_SEC))
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
                pq.sum_rate(HTTP_SERVER_DURATION.series, _ALL, ("le",)),
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
                pq.quantile_by(HTTP_CLIENT_DURATION, q, (L.SERVER_ADDRESS,), _ALL),
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
            pq.quantile_by(HTTP_SERVER_DURATION, q, by, _ALL, window=pq.RANGE_WINDOW),
            _pct(q),
            c.ref_id(i),
            instant=True,
            fmt=PromQueryFormat.TABLE,
        )
        for i, q in enumerate(PERCENTILES)
    ]
    targets.append(
        c.prom_target(
            pq.sum_rate(HTTP_SERVER_DURATION.count, _ALL, by, window=pq.RANGE_WINDOW),
            "req/s",
            c.ref_id(len(targets)),
            instant=True,
            fmt=PromQueryFormat.TABLE,
        )
    )
    traces_of_route = c.dashboard_url(SERVICE_LATENCY_UID, **{ROUTE_VAR: "${__value.raw}"})
    rename = {f"Value #{c.ref_id(i)}": _pct(q) for i, q in enumerate(PERCENTILES)}
    rename[f"Value #{c.ref_id(len(PERCENTILES))}"] = "req/s"
    panel = (
        table.Panel()
        .title("Slowest routes")
        .description(
            "Per route over the selected time range: p50/p90/p95/p99 duration and request rate, sorted by "
            "p99. Percentile cells turn yellow/red against the latency objective. Click a route to show its "
            "traces in the Traces row (sets the Route variable)." + c.percentile_accuracy_note()
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
        .override_by_name(L.HTTP_ROUTE, [c.data_links(("Traces of this route", traces_of_route))])
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
    query = (
        f'{{{c.TRACEQL_SERVICE_NAME}="{c.SERVICE}" && kind=server && span.{A.HTTP_ROUTE}=~"${ROUTE_VAR}" '
        f"&& duration >= ${MIN_DURATION_VAR}}}"
    )
    logs_of_trace = c.dashboard_url(LOGS_UID, **{TRACE_ID_VAR: f"${{__data.fields.{TEMPO_TRACE_ID_FIELD}}}"})
    return (
        table.Panel()
        .title("Slowest traces (Tempo)")
        .description(
            c.empty_ok(
                "Server traces of the service that took at least the 'Min duration' variable (default half "
                "the latency objective), for the selected route, slowest first. Tempo's search returns the "
                "first matches it finds, not a global top list: while the table is full (100 rows) raise "
                "Min duration until it is not, then it holds every trace above it. Click a trace id to "
                "open the trace, a service name for that request's logs.",
                "no request took as long as Min duration in the range (raise it for a fast service, lower "
                "it to see any trace)",
            )
        )
        .unit("ms")  # Tempo's search frame reports trace duration in milliseconds
        .datasource(c.TEMPO)
        .thresholds(c.latency_thresholds(c.LATENCY_SLO_S * 1000))
        .sort_by([cb.TableSortByFieldState().display_name("Duration").desc(True)])
        .span(12)
        .height(8)
        .override_by_name(TEMPO_SERVICE_FIELD, [c.data_links(("Logs of this trace", logs_of_trace))])
        .with_target(c.traceql_target(query, limit=100))
    )


def slowest_requests_table() -> table.Panel:
    """The slowest requests by their exact duration in the access logs: a real top list, server side."""
    q = (
        OpenSearchQueryBuilder(ACCESS_LOGS)
        .datasource(c.OPENSEARCH)
        .ref_id("A")
        .max(LogField.DURATION_S)
        .terms(LogField.TRACE_ID, size=20, order_by="1")
        .terms(LogField.ROUTE, size=1)
        .terms(LogField.STATUS, size=1)
    )
    value = "${__value.raw}"
    return (
        table.Panel()
        .title("Slowest requests (access logs, exact)")
        .description(
            "The 20 requests with the longest duration in the range, ranked by OpenSearch over every "
            "access log record (a true top 20, unlike a trace search): trace id, route, status and the "
            "duration the service measured. Click a trace id to open the trace, or that request's logs."
        )
        .unit(c.SECONDS)
        .datasource(c.OPENSEARCH)
        .thresholds(c.latency_thresholds())
        .sort_by([cb.TableSortByFieldState().display_name(f"Max {LogField.DURATION_S}").desc(True)])
        .span(12)
        .height(8)
        .override_by_name(
            LogField.TRACE_ID,
            [
                c.data_links(
                    ("Open trace", c.explore_trace_url(value)),
                    ("Logs of this trace", c.dashboard_url(LOGS_UID, **{TRACE_ID_VAR: value})),
                ),
                dm.DynamicConfigValue(id_val="unit", value="none"),
            ],
        )
        .with_target(q)
    )


# --- SLO ---------------------------------------------------------------------------------------------
SLO_TITLES = {SLO_AVAILABILITY: "availability (no 5xx)", SLO_LATENCY: f"latency (< {c.LATENCY_SLO_S:g} s)"}
BURN_WINDOWS = ("5m", "1h", "6h", "3d")


def error_budget_stat(sli: str) -> stat.Panel:
    budget = c.ERROR_RATIO_SLO
    spent = pq.selector(slo_error_ratio(sli, "30d"), pq.job_matchers())
    return c.stat_panel(
        f"Error budget left (30 d): {SLO_TITLES[sli]}",
        f"Share of the 30-day error budget of the {SLO_TITLES[sli]} SLO ({1 - budget:.0%} of requests "
        f"good, so {budget:.0%} may be bad) not yet spent: 1 - bad ratio over 30 d / {budget:g}. Below 0 "
        "the SLO is missed for the month. No traffic spends nothing: it reads 100 %. From the recording "
        "rules of stack/prometheus/rules/slo.yml (over the data Prometheus has, at most 30 d).",
        c.PERCENT_UNIT,
        c.ratio_bad_below(0, 0.25),
        c.prom_target(f"1 - {spent} / {budget:g}", c.legend(L.JOB)),
        height=8,
    )


def burn_rate_timeseries() -> ts.Panel:
    targets = [
        c.prom_target(
            f"{pq.selector(slo_error_ratio(sli, w), pq.job_matchers())} / {c.ERROR_RATIO_SLO:g}",
            f"{sli} {w} " + c.legend(L.JOB),
            c.ref_id(i * len(BURN_WINDOWS) + j),
        )
        for i, sli in enumerate((SLO_AVAILABILITY, SLO_LATENCY))
        for j, w in enumerate(BURN_WINDOWS)
    ]
    return c.timeseries_panel(
        "Error budget burn rate",
        "Bad-event ratio / error budget per window, for both SLOs: 1 spends the 30-day budget in exactly "
        "30 days. The alerts of stack/prometheus/rules/slo.yml page at 14.4 (1 h and 5 m both above) or 6 "
        "(6 h and 30 m) and open a ticket at 3 (1 d and 2 h) or 1 (3 d and 6 h); dashed lines at 1, 6 and "
        "14.4. No traffic burns nothing: 0.",
        c.COUNT,
        c.steps(c.GREEN, (1, c.YELLOW), (6, c.ORANGE), (14.4, c.RED)),
        targets,
        show_thresholds=True,
    )


# --- annotations ---------------------------------------------------------------------------------
def restarts_and_deploys_annotation() -> db.AnnotationQuery:
    """A marker at every process start of the service, titled with the build it runs.

    The value of each point is the start time itself (useValueForTime), so a process shows as one
    marker however long it runs; a restart is a new start time, a deploy also a new version/commit.
    """
    starts = (
        f"max by ({L.JOB}, {L.INSTANCE}, {L.VERSION}, {L.COMMIT}) (\n"
        f"  {pq.selector(PROCESS_START_TIME.prom, pq.job_matchers())}\n"
        f"  * on ({L.JOB}, {L.INSTANCE}) group_left ({L.VERSION}, {L.COMMIT})\n"
        f"  {pq.selector(SERVICE_BUILD_INFO.prom, pq.job_matchers())}\n"
        ") * 1000"
    )
    return (
        db.AnnotationQuery()
        .name("Restarts and deploys")
        .datasource(c.PROMETHEUS)
        .enable(True)
        .hide(False)
        .icon_color("purple")
        .target(c.prom_target(starts, ref="Anno"))
        .use_value_for_time(True)
        .step("1m")
        .title_format(f"{{{{{L.JOB}}}}} {{{{{L.INSTANCE}}}}} started")
        .text_format(f"version {{{{{L.VERSION}}}}}, commit {{{{{L.COMMIT}}}}}")
        .tag_keys(f"{L.JOB},{L.VERSION}")
    )
