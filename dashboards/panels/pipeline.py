"""Panels of the Telemetry pipeline dashboard: SDK → collector → backends.

The question this dashboard answers for on-call: is the service slow, or is the telemetry lying?
Metrics are pulled straight from the service, traces and logs are pushed through the collector, so
comparing what each path saw (first row) separates the two at a glance.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.builders import timeseries as ts

from dashboards import common as c
from dashboards import promql as pq
from dashboards.opensearch_query import OpenSearchQueryBuilder
from sample_service.telemetry.catalog import (
    COLLECTOR_QUEUE_CAPACITY,
    COLLECTOR_QUEUE_SIZE,
    DB_CONN_MAX,
    HTTP_SERVER_DURATION,
    SCRAPE_UP,
    SDK_EXPORT_DURATION,
    SDK_LOG_PROCESSED,
    SDK_LOG_QUEUE_CAPACITY,
    SDK_LOG_QUEUE_SIZE,
    SDK_LOGS_EXPORTED,
    SDK_SPAN_PROCESSED,
    SDK_SPAN_QUEUE_CAPACITY,
    SDK_SPAN_QUEUE_SIZE,
    SDK_SPANS_EXPORTED,
    SERVICE_GRAPH_REQUESTS,
    SPAN_CALLS,
    L,
    LogField,
    Metric,
    collector_metric,
)

# The SDK labels each exporter with its component type (e.g. otlp_grpc_span_exporter), which names the
# signal it exports.
_SIGNAL = L.COMPONENT_TYPE
_FAILED = pq.job_matchers(**{L.ERROR_TYPE: "!="})  # error_type set (non-empty) marks drops/failures
_ALL = pq.job_matchers()
SIGNAL_TITLES = {"spans": "spans", "log_records": "log records"}


# --- does each path see the same traffic? -------------------------------------------------------
def signal_agreement_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Requests seen by metrics vs traces",
        "Request rate from the service's own /metrics (pulled by Prometheus, independent of the "
        "collector) against server spans counted by the collector's spanmetrics connector (pushed "
        "through the SDK and collector). The lines should overlap; a gap means spans are lost on the way "
        "(SDK queue drops, collector refusals or export failures below): the telemetry is lying, not "
        "the service.",
        c.REQ_PER_SEC,
        c.informational(),
        [
            c.prom_target(pq.sum_rate(HTTP_SERVER_DURATION.count, _ALL), "metrics (pull)", "A"),
            c.prom_target(
                pq.sum_rate(SPAN_CALLS.series, pq.span_matchers(**{L.SPAN_KIND: c.SPAN_KIND_SERVER})),
                "server spans (push, spanmetrics)",
                "B",
            ),
        ],
        width=16,
    )


def logs_indexed_timeseries() -> ts.Panel:
    q = (
        OpenSearchQueryBuilder(f'{LogField.SERVICE_NAME}:"{c.SERVICE}"')
        .datasource(c.OPENSEARCH)
        .ref_id("A")
        .alias("log records indexed")
        .count()
        .date_histogram(LogField.TIMESTAMP, interval=c.LOG_COUNT_INTERVAL)
    )
    return c.timeseries_panel(
        "Log records indexed in OpenSearch / min",
        "Log documents of the service per minute, counted by OpenSearch itself: the end of the log "
        "path (SDK → collector → OpenSearch). A drop to 0 while requests flow means logs are lost.",
        c.PER_MIN,
        c.informational(),
        [q],
        datasource=c.OPENSEARCH,
        width=8,
    )


# --- SDK -------------------------------------------------------------------------------------------
def _queue_panel(title: str, size: Metric, capacity: Metric, what: str) -> ts.Panel:
    # Per instance: every process has its own queue, and a sum over replicas would hide one that is full.
    per = (L.INSTANCE,)
    return c.timeseries_panel(
        title,
        f"{what} waiting in each instance's SDK batch processor queue against its capacity. A queue at "
        "capacity drops new items (see drops): the exporter cannot keep up or the collector is "
        "unreachable.",
        c.COUNT,
        c.informational(),
        [
            c.prom_target(pq.sum_by(size.series, _ALL, per), c.legend(L.INSTANCE) + " queued", "A"),
            c.prom_target(pq.sum_by(capacity.series, _ALL, per), c.legend(L.INSTANCE) + " capacity", "B"),
        ],
        width=8,
    )


def sdk_span_queue_timeseries() -> ts.Panel:
    return _queue_panel("SDK span queue vs capacity", SDK_SPAN_QUEUE_SIZE, SDK_SPAN_QUEUE_CAPACITY, "Spans")


def sdk_log_queue_timeseries() -> ts.Panel:
    return _queue_panel(
        "SDK log queue vs capacity", SDK_LOG_QUEUE_SIZE, SDK_LOG_QUEUE_CAPACITY, "Log records"
    )


def sdk_dropped_timeseries() -> ts.Panel:
    targets = []
    for ref, metric, what in (("A", SDK_SPAN_PROCESSED, "spans"), ("B", SDK_LOG_PROCESSED, "log records")):
        dropped = pq.sum_rate(metric.series, _FAILED)
        processed = pq.sum_rate(metric.series, _ALL)
        targets.append(c.prom_target(pq.zero_if_absent(dropped, processed), f"{what} dropped", ref))
    return c.timeseries_panel(
        "SDK drops / s",
        "Spans and log records the SDK's batch processors dropped (queue full) per second. 0 while the "
        "processors run and drop nothing; any drop is red because the data is gone for good.",
        c.PER_SEC,
        c.any_is_bad(),
        targets,
        width=8,
    )


def sdk_export_duration_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "SDK export duration p50 / p99",
        "Duration of the SDK's OTLP export calls per signal. These run on the exporter thread, never on "
        "the request path; slow exports fill the queues above.",
        c.SECONDS,
        c.steps(c.GREEN, (0.5, c.YELLOW), (2, c.RED)),
        [
            c.prom_target(
                pq.quantile_by(SDK_EXPORT_DURATION, q, (_SIGNAL,), _ALL),
                f"p{q * 100:g} " + c.legend(_SIGNAL),
                ref,
            )
            for ref, q in (("A", 0.5), ("B", 0.99))
        ],
        width=8,
    )


def sdk_export_failures_timeseries() -> ts.Panel:
    targets = []
    for ref, metric, what in (("A", SDK_SPANS_EXPORTED, "spans"), ("B", SDK_LOGS_EXPORTED, "log records")):
        failed = pq.sum_rate(metric.series, _FAILED)
        exported = pq.sum_rate(metric.series, _ALL)
        targets.append(c.prom_target(pq.zero_if_absent(failed, exported), f"{what} failed", ref))
    return c.timeseries_panel(
        "SDK export failures / s",
        "Spans and log records whose export to the collector failed, per second. 0 while exports "
        "happen and succeed.",
        c.PER_SEC,
        c.any_is_bad(),
        targets,
        width=8,
    )


# --- collector -------------------------------------------------------------------------------------
def collector_signal_timeseries(signal: str) -> ts.Panel:
    what = SIGNAL_TITLES[signal]
    stages = (
        ("A", "receiver_accepted", "accepted"),
        ("B", "receiver_refused", "refused"),
        ("C", "exporter_sent", "sent"),
        ("D", "exporter_send_failed", "send failed"),
    )
    return c.timeseries_panel(
        f"Collector {what}: accepted / refused / sent / failed",
        f"{what.capitalize()} per second at each collector stage, summed over receivers and exporters. "
        "Sent is about accepted x number of exporters of the signal; refused (memory limiter, bad data) "
        "and send failed (backend down, queue full) should stay at 0.",
        c.PER_SEC,
        c.informational(),
        [
            c.prom_target(pq.sum_rate(collector_metric(stage, signal)), label, ref)
            for ref, stage, label in stages
        ],
    )


def collector_refusals_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Collector refusals / s (memory limiter)",
        "Items the collector's receivers refused, per signal. Since the processor-level memory_limiter "
        "metrics were removed, a memory-limiter refusal surfaces as a receiver refusal (the SDK gets a "
        "retryable error and keeps the batch in its queue). Any refusal is red.",
        c.PER_SEC,
        c.any_is_bad(),
        [
            c.prom_target(pq.sum_rate(collector_metric("receiver_refused", s)), SIGNAL_TITLES[s], ref)
            for ref, s in (("A", "spans"), ("B", "log_records"))
        ],
    )


def collector_queue_timeseries() -> ts.Panel:
    by = (L.INSTANCE, L.EXPORTER)
    series = c.legend(L.INSTANCE, L.EXPORTER)
    return c.timeseries_panel(
        "Collector exporter queue vs capacity",
        "Batches waiting in each exporter's sending queue (file-storage backed) against its capacity, per "
        "collector instance. A growing queue means that backend is slow or down; a full one rejects new "
        "data.",
        c.COUNT,
        c.informational(),
        [
            c.prom_target(pq.sum_by(COLLECTOR_QUEUE_SIZE, None, by), f"{series} queued", "A"),
            c.prom_target(pq.sum_by(COLLECTOR_QUEUE_CAPACITY, None, by), f"{series} capacity", "B"),
        ],
    )


# --- Prometheus itself -----------------------------------------------------------------------------
SCRAPE_GAPS_TITLE = "Scrapes per minute (gaps: Prometheus or the service down)"


def scrape_gaps_timeseries() -> ts.Panel:
    """Samples of one always-present service gauge per minute: a scrape gap, whoever caused it."""
    per_minute = round(60 / pq.SCRAPE_INTERVAL_S)
    samples = f"count_over_time({pq.selector(DB_CONN_MAX.series, _ALL)}[{pq.SCRAPE_COUNT_WINDOW}])"
    return c.timeseries_panel(
        SCRAPE_GAPS_TITLE,
        f"Samples Prometheus stored per {pq.SCRAPE_COUNT_WINDOW} of a gauge the service always exposes "
        f"(one sample per successful scrape): {per_minute} at the {pq.SCRAPE_INTERVAL_S}s scrape "
        "interval. A dip, or a hole in the line, is a scrape gap: Prometheus was down or restarting (no "
        "alert can fire for that, the rule evaluator was down too) or the service did not answer "
        "(then ScrapeTargetDown fires). Rates and alerts over the gap saw no data.",
        c.COUNT,
        c.steps(c.RED, (per_minute - 1, c.YELLOW), (per_minute, c.GREEN)),
        # min: the instance with the gap is the one to show, not the healthiest one.
        [c.prom_target(f"min by ({L.JOB}, {L.INSTANCE}) ({samples})", c.legend(L.JOB, L.INSTANCE), "A")],
        width=8,
    )


def scrape_targets_up_stat() -> stat.Panel:
    """Prometheus' own `up` per job: is every target of every job being scraped right now?"""
    up = pq.sum_by(SCRAPE_UP, None, (L.JOB,))
    targets = f"count by ({L.JOB}) ({SCRAPE_UP})"
    return c.stat_panel(
        "Scrape targets up, per job",
        "Share of each scrape job's targets whose last scrape succeeded (Prometheus' `up`). 100% is "
        "every target answering; below it a target is down or unreachable and every panel and alert on "
        "that job is blind (ScrapeTargetDown fires after 2 minutes). Metrics pushed to Prometheus (OTLP, "
        "remote write) have no scrape and do not appear here.",
        c.PERCENT_UNIT,
        c.ratio_bad_below(0.999, 1),
        c.prom_target(pq.ratio(up, targets), c.legend(L.JOB)),
        width=24,
        height=4,
        graph=False,
    )


# --- backends --------------------------------------------------------------------------------------
def tempo_service_graph_timeseries() -> ts.Panel:
    by = (L.CLIENT, L.SERVER)
    return c.timeseries_panel(
        "Tempo service-graph requests / s",
        "Requests between services as Tempo's metrics-generator derives them from the spans it ingested "
        "(remote-written to Prometheus). It moving with the request rate shows Tempo is ingesting traces.",
        c.REQ_PER_SEC,
        c.informational(),
        [
            c.prom_target(
                pq.sum_rate(SERVICE_GRAPH_REQUESTS.series, None, by),
                f"{{{{{L.CLIENT}}}}} → {{{{{L.SERVER}}}}}",
            )
        ],
        width=8,
    )
