"""The one place where metric names, label keys and log attribute keys are spelled.

The service emits these, the dashboards query them and the tests look for them, so a rename is one
edit here and a failing test elsewhere — never a dashboard that silently shows "No data".

Names follow the OpenTelemetry semantic conventions; ``prom`` is the name that OTel's Prometheus
translation produces (dots → underscores, unit suffix, ``_total`` on counters). The service exposes
the ``prom`` names itself (pull, see docs/architecture.md), so dashboards work the same for services
that push OTLP through a collector's Prometheus exporter.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Metric:
    otel: str  # semantic-convention instrument name
    prom: str  # Prometheus family name (without _bucket/_sum/_count)
    kind: Kind
    unit: str
    description: str
    labels: tuple[str, ...] = ()
    source: str = "service"  # who emits it: service | collector | spanmetrics | tempo | sdk

    @property
    def series(self) -> str:
        """The name of the series to put in a PromQL query for rates/values."""
        if self.kind is Kind.HISTOGRAM:
            return f"{self.prom}_bucket"
        return self.prom

    @property
    def count(self) -> str:
        return f"{self.prom}_count" if self.kind is Kind.HISTOGRAM else self.prom

    @property
    def sum(self) -> str:
        return f"{self.prom}_sum" if self.kind is Kind.HISTOGRAM else self.prom


# --- label keys (Prometheus spelling of semconv attributes) -----------------------------------
class L:
    HTTP_METHOD = "http_request_method"
    HTTP_ROUTE = "http_route"
    HTTP_STATUS = "http_response_status_code"
    ERROR_TYPE = "error_type"
    SERVER_ADDRESS = "server_address"
    DB_SYSTEM = "db_system_name"
    DB_OPERATION = "db_operation_name"
    POOL_NAME = "db_client_connection_pool_name"
    POOL_STATE = "db_client_connection_state"
    CACHE_NAME = "cache_name"
    CACHE_RESULT = "cache_result"
    DECISION = "decision"
    SEGMENT = "rule_segment"
    # added by Prometheus / the collector
    JOB = "job"
    INSTANCE = "instance"
    SERVICE_NAME = "service_name"
    SPAN_NAME = "span_name"
    SPAN_KIND = "span_kind"
    STATUS_CODE = "status_code"
    CLIENT = "client"
    SERVER = "server"
    # on the OTel SDK's self-metrics (which processor/exporter instance)
    COMPONENT_TYPE = "otel_component_type"
    COMPONENT_NAME = "otel_component_name"
    # on the build info gauge (SERVICE_BUILD_INFO)
    VERSION = "version"
    COMMIT = "commit"
    # on the collector's own telemetry (which exporter's queue)
    EXPORTER = "exporter"


# --- semconv attribute keys (span / log attributes) --------------------------------------------
class A:
    HTTP_METHOD = "http.request.method"
    HTTP_ROUTE = "http.route"
    HTTP_STATUS = "http.response.status_code"
    URL_PATH = "url.path"
    DURATION_S = "http.server.request.duration"  # access-log attribute, seconds (float)
    ERROR_TYPE = "error.type"
    SCENARIO = "o11y.scenarios"


# HTTP histogram buckets: semconv's advisory boundaries plus finer low buckets, because the
# sample service's p50 sits in single-digit milliseconds and interpolation across a 5 ms-wide
# first bucket would hide it.
HTTP_DURATION_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
FAST_DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)

_HTTP_LABELS = (L.HTTP_METHOD, L.HTTP_ROUTE, L.HTTP_STATUS, L.ERROR_TYPE)

# --- service: HTTP --------------------------------------------------------------------------
HTTP_SERVER_DURATION = Metric(
    "http.server.request.duration", "http_server_request_duration_seconds", Kind.HISTOGRAM, "s",
    "Duration of HTTP server requests.", _HTTP_LABELS,
)
HTTP_SERVER_ACTIVE = Metric(
    "http.server.active_requests", "http_server_active_requests", Kind.GAUGE, "{request}",
    "Number of active HTTP server requests.", (L.HTTP_METHOD,),
)
HTTP_CLIENT_DURATION = Metric(
    "http.client.request.duration", "http_client_request_duration_seconds", Kind.HISTOGRAM, "s",
    "Duration of outgoing HTTP requests (the partner API hop).",
    (L.HTTP_METHOD, L.SERVER_ADDRESS, L.HTTP_STATUS, L.ERROR_TYPE),
)

# --- service: DB pool (SQLAlchemy's instrumentation emits none of these) ---------------------
_POOL = (L.POOL_NAME,)
DB_CONN_COUNT = Metric(
    "db.client.connection.count", "db_client_connection_count", Kind.GAUGE, "{connection}",
    "Connections in the pool by state (idle|used).", (L.POOL_NAME, L.POOL_STATE),
)
DB_CONN_MAX = Metric(
    "db.client.connection.max", "db_client_connection_max", Kind.GAUGE, "{connection}",
    "Most connections the pool may open (pool size + max overflow).", _POOL,
)
DB_CONN_PENDING = Metric(
    "db.client.connection.pending_requests", "db_client_connection_pending_requests", Kind.GAUGE,
    "{request}", "Checkouts waiting for a free connection.", _POOL,
)
DB_CONN_WAIT = Metric(
    "db.client.connection.wait_time", "db_client_connection_wait_time_seconds", Kind.HISTOGRAM, "s",
    "Time spent waiting to check a connection out of the pool.", _POOL,
)
DB_CONN_USE = Metric(
    "db.client.connection.use_time", "db_client_connection_use_time_seconds", Kind.HISTOGRAM, "s",
    "Time between checkout and return of a connection.", _POOL,
)
DB_CONN_TIMEOUTS = Metric(
    "db.client.connection.timeouts", "db_client_connection_timeouts_total", Kind.COUNTER, "{timeout}",
    "Checkouts that timed out waiting for a connection.", _POOL,
)
DB_OPERATION_DURATION = Metric(
    "db.client.operation.duration", "db_client_operation_duration_seconds", Kind.HISTOGRAM, "s",
    "Duration of database statements.", (L.DB_SYSTEM, L.DB_OPERATION),
)

# --- service: cache ------------------------------------------------------------------------
CACHE_REQUESTS = Metric(
    "cache.requests", "cache_requests_total", Kind.COUNTER, "{request}",
    "Cache look-ups by result (hit|miss).", (L.CACHE_NAME, L.CACHE_RESULT),
)
CACHE_EVICTIONS = Metric(
    "cache.evictions", "cache_evictions_total", Kind.COUNTER, "{entry}",
    "Entries evicted (expired or over capacity).", (L.CACHE_NAME,),
)
CACHE_ENTRIES = Metric(
    "cache.entries", "cache_entries", Kind.GAUGE, "{entry}", "Entries held in the cache.", (L.CACHE_NAME,),
)

# --- service: business ----------------------------------------------------------------------
RULES_EVAL_DURATION = Metric(
    "rules.evaluation.duration", "rules_evaluation_duration_seconds", Kind.HISTOGRAM, "s",
    "Time to evaluate the rule set of one request.", (L.SEGMENT, L.DECISION),
)
RULES_EVALUATED = Metric(
    "rules.evaluated", "rules_evaluated_total", Kind.COUNTER, "{rule}",
    "Rules evaluated (early exit keeps this low).", (L.SEGMENT,),
)
DECISION_EVENTS = Metric(
    "decision.events", "decision_events_total", Kind.COUNTER, "{event}",
    "Decision events published in the background, by outcome (published|dropped|failed).", ("outcome",),
)

# --- service: process and build (deploy/restart annotations) ----------------------------------
# Prometheus convention rather than semconv: `<thing>_build_info` = 1 with the build in its labels,
# so a deploy is a new label set; prometheus-client's process collector supplies the start time.
SERVICE_BUILD_INFO = Metric(
    "service.build_info", "service_build_info", Kind.GAUGE, "1",
    "Always 1; version (service.version) and commit (vcs.ref.head.revision) of the running build.",
    (L.VERSION, L.COMMIT),
)
PROCESS_START_TIME = Metric(
    "process.start_time", "process_start_time_seconds", Kind.GAUGE, "s",
    "Unix time the process started (prometheus-client's process collector).",
)

# --- OTel SDK self-observability (semconv otel.sdk.*) ----------------------------------------
# Names and label keys as the Python SDK 1.45 really emits them (checked by
# tests/unit/test_telemetry_sdk_metrics.py). Exporter series also carry server_address/server_port.
_SDK = (L.COMPONENT_TYPE, L.COMPONENT_NAME)
_SDK_ERR = (*_SDK, L.ERROR_TYPE)
SDK_SPAN_QUEUE_SIZE = Metric(
    "otel.sdk.processor.span.queue.size", "otel_sdk_processor_span_queue_size", Kind.GAUGE, "{span}",
    "Spans waiting in the batch processor queue.", _SDK, source="sdk",
)
SDK_SPAN_QUEUE_CAPACITY = Metric(
    "otel.sdk.processor.span.queue.capacity", "otel_sdk_processor_span_queue_capacity", Kind.GAUGE,
    "{span}", "Capacity of the batch span processor queue.", _SDK, source="sdk",
)
SDK_SPAN_PROCESSED = Metric(
    "otel.sdk.processor.span.processed", "otel_sdk_processor_span_processed_total", Kind.COUNTER, "{span}",
    "Spans handed on by the processor; error_type set when dropped.", _SDK_ERR, source="sdk",
)
SDK_LOG_QUEUE_SIZE = Metric(
    "otel.sdk.processor.log.queue.size", "otel_sdk_processor_log_queue_size", Kind.GAUGE, "{log_record}",
    "Log records waiting in the batch processor queue.", _SDK, source="sdk",
)
SDK_LOG_QUEUE_CAPACITY = Metric(
    "otel.sdk.processor.log.queue.capacity", "otel_sdk_processor_log_queue_capacity", Kind.GAUGE,
    "{log_record}", "Capacity of the batch log processor queue.", _SDK, source="sdk",
)
SDK_LOG_PROCESSED = Metric(
    "otel.sdk.processor.log.processed", "otel_sdk_processor_log_processed_total", Kind.COUNTER,
    "{log_record}", "Log records handed on by the processor; error_type set when dropped.", _SDK_ERR,
    source="sdk",
)
SDK_EXPORT_DURATION = Metric(
    "otel.sdk.exporter.operation.duration", "otel_sdk_exporter_operation_duration_seconds",
    Kind.HISTOGRAM, "s", "Duration of export calls (signal: otel_component_type); error_type set on failure.",
    _SDK_ERR, source="sdk",
)
SDK_SPANS_EXPORTED = Metric(
    "otel.sdk.exporter.span.exported", "otel_sdk_exporter_span_exported_total", Kind.COUNTER, "{span}",
    "Spans the exporter sent; error_type set when they failed.", _SDK_ERR, source="sdk",
)
SDK_LOGS_EXPORTED = Metric(
    "otel.sdk.exporter.log.exported", "otel_sdk_exporter_log_exported_total", Kind.COUNTER, "{log_record}",
    "Log records the exporter sent; error_type set when they failed.", _SDK_ERR, source="sdk",
)

# --- collector spanmetrics connector (per-function span latency) -----------------------------
SPAN_DURATION = Metric(
    "traces.span.metrics.duration", "traces_span_metrics_duration_seconds", Kind.HISTOGRAM, "s",
    "Span duration by span name (per-function latency), from the collector's spanmetrics connector.",
    (L.SERVICE_NAME, L.SPAN_NAME, L.SPAN_KIND, L.STATUS_CODE), source="spanmetrics",
)
SPAN_CALLS = Metric(
    "traces.span.metrics.calls", "traces_span_metrics_calls_total", Kind.COUNTER, "{call}",
    "Span count by span name and status.", (L.SERVICE_NAME, L.SPAN_NAME, L.SPAN_KIND, L.STATUS_CODE),
    source="spanmetrics",
)

# --- Tempo metrics-generator (service graph) ----------------------------------------------
SERVICE_GRAPH_REQUESTS = Metric(
    "traces.service_graph.request", "traces_service_graph_request_total", Kind.COUNTER, "{request}",
    "Requests between two services, from Tempo's metrics-generator.", (L.CLIENT, L.SERVER), source="tempo",
)
SERVICE_GRAPH_SERVER_DURATION = Metric(
    "traces.service_graph.request.server", "traces_service_graph_request_server_seconds", Kind.HISTOGRAM,
    "s", "Server-side duration of requests between two services.", (L.CLIENT, L.SERVER), source="tempo",
)

# --- collector self-telemetry (its :8888 endpoint) -------------------------------------------
# Signal-specific suffixes: spans | metric_points | log_records.
SIGNAL_SUFFIXES = ("spans", "log_records")


def collector_metric(stage: str, signal: str) -> str:
    """``collector_metric("receiver_accepted", "spans")`` → ``otelcol_receiver_accepted_spans_total``."""
    return f"otelcol_{stage}_{signal}_total"


COLLECTOR_STAGES = ("receiver_accepted", "receiver_refused", "exporter_sent", "exporter_send_failed")
COLLECTOR_QUEUE_SIZE = "otelcol_exporter_queue_size"
COLLECTOR_QUEUE_CAPACITY = "otelcol_exporter_queue_capacity"

# Prometheus' own per-target series: 1 when the last scrape of that target succeeded.
SCRAPE_UP = "up"


# --- SLO recording rules (stack/prometheus/rules/slo.yml records them, dashboards read them) -------
SLO_AVAILABILITY = "http_availability"  # bad event: a 5xx answer
SLO_LATENCY = "http_latency"  # bad event: slower than the latency objective
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")


def slo_error_ratio(sli: str, window: str) -> str:
    """``slo:http_availability_errors:ratio_rate1h``: share of bad events over ``window``, per job."""
    return f"slo:{sli}_errors:ratio_rate{window}"


def all_metrics() -> list[Metric]:
    return [v for v in globals().values() if isinstance(v, Metric)]


def service_metrics() -> list[Metric]:
    return [m for m in all_metrics() if m.source == "service"]


# --- where the signals land: fixed names shared by Grafana provisioning, dashboards and tests ---
class DatasourceUID:
    PROMETHEUS = "o11y-prometheus"
    TEMPO = "o11y-tempo"
    OPENSEARCH = "o11y-opensearch"


LOGS_INDEX = "o11y-logs"  # collector opensearch exporter `logs_index`; template in stack/opensearch/
TRACES_INDEX = "o11y-traces"


class LogField:
    """Field paths of a log document as the collector's opensearch exporter (SS4O mode) writes it.

    Verified against the real exporter + OpenSearch by tests/stack; fix here if the exporter changes.
    """

    TIMESTAMP = "@timestamp"
    TRACE_ID = "traceId"
    SPAN_ID = "spanId"
    BODY = "body"
    SEVERITY_TEXT = "severity.text"
    SERVICE_NAME = "resource.service.name"
    ROUTE = f"attributes.{A.HTTP_ROUTE}"
    METHOD = f"attributes.{A.HTTP_METHOD}"
    STATUS = f"attributes.{A.HTTP_STATUS}"
    DURATION_S = f"attributes.{A.DURATION_S}"
