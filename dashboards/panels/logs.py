"""Panels of the Logs dashboard: exact percentiles from access logs, error logs, logs of one trace.

Every request writes one access log record carrying its duration (``LogField.DURATION_S``), so
OpenSearch can compute *exact* percentiles over the raw values, beside the Prometheus ones that are
interpolated inside histogram buckets. Where the two disagree, the bucket layout is hiding detail.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import logs
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models import common as cm

from dashboards import common as c
from dashboards import promql as pq
from dashboards.opensearch_query import OpenSearchQueryBuilder
from sample_service.telemetry.catalog import HTTP_SERVER_DURATION, LogField

PERCENTILES = (90.0, 95.0, 99.0)
TRACE_ID_VAR = "trace_id"

_SERVICE = f'{LogField.SERVICE_NAME}:"{c.SERVICE}"'
# Access records are the ones carrying the request duration attribute.
ACCESS_LOGS = f"{_SERVICE} AND _exists_:{LogField.DURATION_S}"
ERROR_LOGS = f"{_SERVICE} AND {LogField.SEVERITY_TEXT}:({' OR '.join(c.ERROR_SEVERITIES)})"
# Empty variable → `traceId:*` (recent logs that have a trace id); a full id → that trace's logs only.
TRACE_LOGS = f"{_SERVICE} AND {LogField.TRACE_ID}:${{{TRACE_ID_VAR}}}*"


def _os(query: str, ref: str = "A") -> OpenSearchQueryBuilder:
    # No per-query time field: the plugin filters and buckets on the datasource's configured one.
    return OpenSearchQueryBuilder(query).datasource(c.OPENSEARCH).ref_id(ref)


def _exact_percentiles(ref: str = "A") -> OpenSearchQueryBuilder:
    return (
        _os(ACCESS_LOGS, ref)
        .percentiles(LogField.DURATION_S, list(PERCENTILES))
        .date_histogram(LogField.TIMESTAMP)
    )


def log_latency_percentiles_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Latency p90 / p95 / p99 from access logs (exact)",
        "Percentiles of the request duration recorded in each access log record, computed by "
        "OpenSearch over the raw values per interval: no bucket interpolation.",
        c.SECONDS,
        c.latency_thresholds(),
        [_exact_percentiles()],
        datasource=c.OPENSEARCH,
    )


def histogram_latency_percentiles_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Latency p90 / p95 / p99 from the histogram",
        "The same percentiles from the Prometheus histogram. Differences to the exact panel are the "
        "buckets' resolution (and log records still in flight)." + c.percentile_accuracy_note(),
        c.SECONDS,
        c.latency_thresholds(),
        [
            c.prom_target(
                pq.quantile_by(HTTP_SERVER_DURATION, p / 100, (), pq.job_matchers()), f"p{p:g}", c.ref_id(i)
            )
            for i, p in enumerate(PERCENTILES)
        ],
    )


def p99_exact_vs_interpolated_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "p99: access logs (exact) vs histogram",
        "Both p99 lines on one graph. With native histograms they agree within the bound below; a "
        "steady gap means the service exposes classic buckets only and a bucket boundary sits far from "
        "the real p99 (expose native histograms, or add boundaries near the objective)."
        + c.percentile_accuracy_note(),
        c.SECONDS,
        c.latency_thresholds(),
        [
            _os(ACCESS_LOGS, "A")
            .alias("p99 exact (logs)")
            .percentiles(LogField.DURATION_S, [99.0])
            .date_histogram(LogField.TIMESTAMP),
            c.prom_target(
                pq.quantile_by(HTTP_SERVER_DURATION, 0.99, (), pq.job_matchers()), "p99 histogram", "B"
            ),
        ],
        datasource=c.MIXED,
        width=24,
    )


def access_logs_by_status_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Access log records per minute by status code",
        "Access log records (one per request) per minute and HTTP status code, counted in OpenSearch.",
        c.PER_MIN,
        c.informational(),
        [
            _os(ACCESS_LOGS)
            .count()
            .terms(LogField.STATUS, size=10)
            .date_histogram(LogField.TIMESTAMP, interval=c.LOG_COUNT_INTERVAL)
        ],
        datasource=c.OPENSEARCH,
        stacked=True,
    )


def error_log_count_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Error log records per minute",
        f"Records at severity {', '.join(c.ERROR_SEVERITIES)} per minute. Any is worth a look: each one "
        "carries the trace id of the request that logged it.",
        c.PER_MIN,
        c.any_is_bad(),
        [
            _os(ERROR_LOGS)
            .alias("error log records")
            .count()
            .date_histogram(LogField.TIMESTAMP, interval=c.LOG_COUNT_INTERVAL)
        ],
        datasource=c.OPENSEARCH,
    )


def _logs_panel(title: str, description: str, query: str, height: int) -> logs.Panel:
    return (
        logs.Panel()
        .title(title)
        .description(description)
        .unit("none")  # log lines have no unit; stated so every panel declares one
        .thresholds(c.informational())
        .datasource(c.OPENSEARCH)
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .prettify_log_message(False)
        .sort_order(cm.LogsSortOrder.DESCENDING)
        .span(24)
        .height(height)
        .with_target(_os(query).logs(size=100))
    )


def error_logs_logs() -> logs.Panel:
    return _logs_panel(
        "Error logs",
        f"The latest log records at severity {', '.join(c.ERROR_SEVERITIES)}. Expand one and follow its "
        "traceId link to open the trace in Tempo.",
        ERROR_LOGS,
        10,
    )


def logs_by_trace_id_logs() -> logs.Panel:
    return _logs_panel(
        "Logs of a trace",
        "Paste a trace id into the 'Trace id' variable (e.g. from an exemplar or the slowest-traces "
        "table) to see every log record of that request. Left empty, it shows the latest records that "
        "carry any trace id.",
        TRACE_LOGS,
        12,
    )
