"""The signal matrix: ONE table of (signal, backend, check, expectation) rows.

tests/stack/test_signal_matrix.py runs every row against the native stack and
tests/stack/test_docker_e2e.py runs the same rows against `docker compose up`. A row's check returns
something truthy when the expectation holds and raises (or returns falsy) while it does not yet;
the tests wrap it in poll_until, so eventually-consistent backends get until `timeout`, and a
failure message carries the last thing the check saw.

The trace store in both e2e runs is Jaeger standing in for Tempo at the `tempo` address
(tests/compose/jaeger-for-tempo.yaml): Tempo is AGPL (never built here) and no image can be pulled.
Rows ask it what keeps their meaning (a trace by id with its spans' attributes, traces by service and
span name); what only Tempo can show is in NOT_PROVEN, with the reason, and not claimed by any row.

Every metric name comes from sample_service/telemetry/catalog.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sample_service.telemetry import catalog
from sample_service.telemetry.catalog import L
from tests.stack.backends import Backends, hex_trace_id, spans_of

SERVICE = "sample-service"
PARTNER = "partner-api"
ROUTES = ("/v1/evaluate", "/v1/users/{user_id}/records")
# Per-function spans on the critical path (sample_service: rules/, profile.py, partner_client.py)
# and the partner's own function span.
FUNCTION_SPANS = getattr(
    catalog, "FUNCTION_SPANS", ("rules.load", "rules.evaluate", "profile.fetch", "partner.fetch")
)
PARTNER_SPANS = getattr(catalog, "PARTNER_SPANS", ("partner.score",))
# Prometheus scrape jobs the e2e requires up. `tempo` (Tempo's own /metrics on tempo:3200) is not
# among them: see NOT_PROVEN.
# Span metrics are not scraped: the collector pushes them to Prometheus's OTLP receiver.
SCRAPE_JOBS = ("sample-service", "partner-api", "otel-collector", "prometheus")

_TEMPO_ABSENT = (
    "Tempo is absent from the e2e: AGPL (not-to-use here, so never built) and no registry answers "
    "for its image; Jaeger stands in for the trace store"
)
# What compose runs but neither e2e proves, in one place (docs/native.md links here). id -> why.
NOT_PROVEN: dict[str, str] = {
    "service-graph": "traces_service_graph_* come from Tempo's metrics-generator (remote write to "
    f"Prometheus); Jaeger has no metrics-generator. {_TEMPO_ABSENT}. The collector's servicegraph "
    "connector cannot be built here either (docs/native.md)",
    "tempo-scrape-job": "the `tempo` scrape job reads Tempo's own /metrics on tempo:3200, where the "
    f"stand-in serves its query API instead. {_TEMPO_ABSENT}",
    "traceql-search": "TraceQL (Tempo's /api/search) is not spoken by Jaeger: the rows that searched with "
    "TraceQL search by service and span name with Jaeger's API instead, which keeps their meaning but "
    f"not TraceQL itself. {_TEMPO_ABSENT}",
    "grafana-tempo-datasource": "Grafana's Tempo datasource, and the dashboard panels on it (TraceQL), "
    f"need Tempo: the doctor names them 'not checkable: needs Tempo'. {_TEMPO_ABSENT}; Grafana itself is "
    "absent too",
}


@dataclass
class Ctx:
    """What rows share: the backends and the ids one row finds and another uses."""

    backends: Backends
    trace_ids: list[str] = field(default_factory=list)  # from the trace store, with the partner hop
    # Trace ids our own traffic got back from the service: rows look these up in the trace store, so another
    # process exporting to the same collector (a developer's benchmark, say) cannot be picked instead.
    own_trace_ids: frozenset[str] = frozenset()
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    id: str
    signal: str  # metrics | traces | logs | self-telemetry
    backend: str  # prometheus | trace-store | opensearch
    check: Callable[[Ctx], Any]
    expectation: str
    timeout: float = 90.0

    def __str__(self) -> str:
        return self.id


def _need(cond: Any, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


# --- metrics (pulled by Prometheus) ---------------------------------------------------------
def red_series(ctx: Ctx) -> Any:
    m = catalog.HTTP_SERVER_DURATION
    q = f'sum by ({L.HTTP_ROUTE}) (increase({m.count}{{job="{SERVICE}"}}[1h]))'
    routes = ctx.backends.prom_label_values(q, L.HTTP_ROUTE)
    _need(set(ROUTES) <= routes, f"{q}: routes {sorted(routes)} lack {sorted(set(ROUTES) - routes)}")
    q = f'sum by ({L.HTTP_STATUS}) ({m.count}{{job="{SERVICE}"}})'
    codes = ctx.backends.prom_label_values(q, L.HTTP_STATUS)
    _need(
        "200" in codes and any(c.startswith("4") for c in codes),
        f"status codes {sorted(codes)}: want 200 and a 4xx",
    )
    q = (
        f'histogram_quantile(0.99, sum by (le) (rate({m.series}{{job="{SERVICE}",'
        f'{L.HTTP_ROUTE}="/v1/evaluate"}}[5m])))'
    )
    p99 = ctx.backends.prom_value(q)
    _need(p99 is not None and 0 < p99 < 60, f"{q} = {p99}")
    return routes


def service_catalog_metrics(ctx: Ctx) -> Any:
    missing = []
    for m in catalog.service_metrics():
        if not ctx.backends.prom(f'{m.series}{{job="{SERVICE}"}}'):
            missing.append(m.series)
    _need(not missing, f"catalog metrics with no series from job {SERVICE}: {missing}")
    return True


def sdk_self_metrics(ctx: Ctx) -> Any:
    missing = [
        m.series
        for m in catalog.all_metrics()
        if m.source == "sdk"
        if not ctx.backends.prom(f'{m.series}{{job="{SERVICE}"}}')
    ]
    _need(not missing, f"SDK self-metrics absent from job {SERVICE}: {missing}")
    return True


def partner_red(ctx: Ctx) -> Any:
    m = catalog.HTTP_SERVER_DURATION
    return ctx.backends.prom(f'{m.count}{{job="{PARTNER}"}}')


def partner_client_metrics(ctx: Ctx) -> Any:
    m = catalog.HTTP_CLIENT_DURATION
    return ctx.backends.prom(f'{m.count}{{job="{SERVICE}"}}')


def targets_up(ctx: Ctx) -> Any:
    up = {s["metric"]["job"]: s["value"][1] for s in ctx.backends.prom("up")}
    bad = {j: up.get(j) for j in SCRAPE_JOBS if up.get(j) != "1"}
    _need(not bad, f"scrape jobs not up: {bad} (all: {up})")
    return True


def exemplars_in_trace_store(ctx: Ctx) -> Any:
    m = catalog.HTTP_SERVER_DURATION
    ex = ctx.backends.prom_exemplars(f'{m.series}{{job="{SERVICE}"}}')
    ids = [e["labels"].get("trace_id") for e in ex if e.get("labels", {}).get("trace_id")]
    _need(ids, f"no exemplars with trace_id on {m.series} ({len(ex)} exemplars)")
    sample = sorted(set(ids))[-3:]
    missing = [t for t in sample if not ctx.backends.trace_spans(t)]
    _need(not missing, f"exemplar trace ids not (yet) in the trace store: {missing} of {sample}")
    ctx.notes["exemplar_trace_ids"] = sample
    return sample


# --- traces (pushed: SDK -> collector -> trace store) ---------------------------------------
def _complete(spans: list[dict[str, Any]]) -> bool:
    """The per-function spans and a partner-api span parented by a sample-service span."""
    by_id = {s["spanId"]: s for s in spans}
    names = {s["name"] for s in spans if s["service"] == SERVICE}
    partner = [s for s in spans if s["service"] == PARTNER]
    # the partner's server span must hang under a sample-service span (W3C propagation)
    linked = any(by_id.get(s["parentSpanId"], {}).get("service") == SERVICE for s in partner)
    return {"rules.evaluate", "profile.fetch", "partner.fetch"} <= names and linked


def traces_with_partner_hop(ctx: Ctx) -> Any:
    found = ctx.backends.trace_search(SERVICE, "partner.fetch", limit=200)
    _need(found, "no sample-service trace with a partner.fetch span in the trace store's search")
    complete = []
    for t in found:
        spans = spans_of(t)
        tid = spans[0]["traceId"] if spans else ""
        if not tid or (ctx.own_trace_ids and tid not in ctx.own_trace_ids):
            continue
        if _complete(spans):
            complete.append(tid)
    _need(
        complete,
        f"none of {len(found)} traces holds rules.evaluate+profile.fetch+partner.fetch "
        "and a partner-api span parented by a sample-service span",
    )
    # what search found, the lookup by id returns whole (the path Grafana's trace view takes)
    by_id = [tid for tid in complete[:3] if _complete(ctx.backends.trace_spans(tid))]
    _need(by_id, f"traces {complete[:3]} found by search are not returned whole by id")
    ctx.trace_ids[:] = complete
    return complete


def traces_by_id_with_attributes(ctx: Ctx) -> Any:
    """Spans leave the collector and come back by trace id with their attributes: our own requests'
    trace ids (returned by the service) resolve to server spans carrying the HTTP attributes."""
    _need(ctx.own_trace_ids, "the traffic run recorded no trace ids")
    for tid in sorted(ctx.own_trace_ids)[:20]:
        spans = ctx.backends.trace_spans(tid)
        server = [
            s
            for s in spans
            if s["service"] == SERVICE and s["attributes"].get(catalog.A.HTTP_ROUTE) == "/v1/evaluate"
        ]
        partner = [s for s in spans if s["service"] == PARTNER and s["attributes"].get(catalog.A.HTTP_ROUTE)]
        if not (server and partner):
            continue
        attrs = server[0]["attributes"]
        _need(
            str(attrs.get(catalog.A.HTTP_STATUS)) == "200" and attrs.get(catalog.A.HTTP_METHOD) == "POST",
            f"trace {tid}: server span attributes {attrs}",
        )
        _need(all(s["traceId"] == hex_trace_id(tid) for s in spans), f"trace {tid}: foreign trace ids")
        return tid
    raise AssertionError(
        "none of our own trace ids came back with a sample-service /v1/evaluate server span (http.route "
        "attribute) and a partner-api server span"
    )


def every_function_span(ctx: Ctx) -> Any:
    missing = []
    for name in FUNCTION_SPANS:
        if not ctx.backends.trace_search(SERVICE, name, limit=1):
            missing.append(name)
    for name in PARTNER_SPANS:
        if not ctx.backends.trace_search(PARTNER, name, limit=1):
            missing.append(f"{PARTNER}:{name}")
    _need(not missing, f"no trace in the trace store holds spans {missing}")
    return True


def span_metrics(ctx: Ctx) -> Any:
    m = catalog.SPAN_DURATION
    span = f'{{{L.SERVICE_NAME}="{SERVICE}"}}'
    # histogram_count() of a native histogram: a classic _bucket series would not answer it
    q = f"sum by ({L.SPAN_NAME}) (histogram_count({m.prom}{span}))"
    names = ctx.backends.prom_label_values(q, L.SPAN_NAME)
    _need(
        set(FUNCTION_SPANS) <= names,
        f"{q}: span names {sorted(names)} lack {sorted(set(FUNCTION_SPANS) - names)}",
    )
    calls = ctx.backends.prom(f"{catalog.SPAN_CALLS.series}{span}")
    _need(calls, f"no {catalog.SPAN_CALLS.series}")
    ex = ctx.backends.prom_exemplars(f"{m.prom}{span}")
    _need(any(e.get("labels", {}).get("trace_id") for e in ex), f"no trace_id exemplars on {m.prom}")
    return names


# --- logs (pushed: SDK -> collector -> OpenSearch) ------------------------------------------
def access_logs(ctx: Ctx) -> Any:
    f = catalog.LogField
    q = {
        "bool": {
            "filter": [
                {"match": {f.SERVICE_NAME: SERVICE}},
                {"exists": {"field": f.ROUTE}},
                {"exists": {"field": f.STATUS}},
                {"exists": {"field": f.DURATION_S}},
                {"exists": {"field": f.TRACE_ID}},
            ]
        }
    }
    n = ctx.backends.os_count(q)
    _need(n > 0, f"no access log documents with route/status/duration/trace id in {catalog.LOGS_INDEX}")
    return n


def logs_by_trace_id(ctx: Ctx) -> Any:
    if not ctx.trace_ids:  # normally found by row traces-partner-hop; run alone, find them here
        traces_with_partner_hop(ctx)
    f = catalog.LogField
    for tid in ctx.trace_ids:
        hits = ctx.backends.os_search({"match": {f.TRACE_ID: tid}}, size=5)["hits"]["hits"]
        if hits:
            return tid
    raise AssertionError(f"no log document for any of the trace store's trace ids {ctx.trace_ids[:5]}")


# --- the collector's own telemetry ---------------------------------------------------------
def collector_accepted(ctx: Ctx) -> Any:
    out = {}
    for sig in catalog.SIGNAL_SUFFIXES:
        q = f'sum({catalog.collector_metric("receiver_accepted", sig)}{{job="otel-collector"}})'
        v = ctx.backends.prom_value(q)
        _need(v is not None and v > 0, f"{q} = {v}")
        out[sig] = v
    return out


def collector_nothing_lost(ctx: Ctx) -> Any:
    seen = {}
    for sig in catalog.SIGNAL_SUFFIXES:
        # the sent counter must exist (else "failed absent" would prove nothing)
        sent = f'sum({catalog.collector_metric("exporter_sent", sig)}{{job="otel-collector"}})'
        v = ctx.backends.prom_value(sent)
        _need(v is not None and v > 0, f"{sent} = {v}")
        for stage in ("receiver_refused", "receiver_failed", "exporter_send_failed"):
            q = f'sum({catalog.collector_metric(stage, sig)}{{job="otel-collector"}})'
            v = ctx.backends.prom_value(q)
            seen[q] = v
            if v not in (None, 0.0):
                raise AssertionError(f"{q} = {v}, want 0")
    return seen or True


def doctor_backends(b: Backends) -> Any:
    """The dashboard doctor's view of the e2e's backends: Tempo declared absent (Jaeger stands in),
    so Tempo-datasource panels and panels on Tempo-only metrics are reported "not checkable: needs
    Tempo", counted and named, and every other panel must still have data."""
    from scripts.doctor import Backends as DoctorBackends

    return DoctorBackends(
        prometheus=b.prometheus,
        tempo=b.tempo,
        opensearch=b.opensearch,
        tempo_absent=NOT_PROVEN["grafana-tempo-datasource"],
        tempo_only_metrics=tuple(m.prom for m in catalog.all_metrics() if m.source == "tempo"),
    )


MATRIX: list[Row] = [
    Row("targets-up", "metrics", "prometheus", targets_up, "every scrape job is up (== 1)"),
    Row(
        "red-series",
        "metrics",
        "prometheus",
        red_series,
        "RED series under the catalog names: both routes, 200 and 4xx codes, a finite p99",
    ),
    Row(
        "service-catalog-metrics",
        "metrics",
        "prometheus",
        service_catalog_metrics,
        "every service metric of the catalog has a series from job sample-service",
    ),
    Row(
        "sdk-self-metrics",
        "metrics",
        "prometheus",
        sdk_self_metrics,
        "the OTel SDK's queue/export self-metrics are scraped",
    ),
    Row("partner-red", "metrics", "prometheus", partner_red, "the partner API's own RED series"),
    Row(
        "partner-client",
        "metrics",
        "prometheus",
        partner_client_metrics,
        "client-side duration of the partner hop",
    ),
    Row(
        "exemplars-in-trace-store",
        "metrics+traces",
        "prometheus+trace-store",
        exemplars_in_trace_store,
        "exemplars on the HTTP histogram carry trace ids that the trace store returns",
    ),
    Row(
        "traces-partner-hop",
        "traces",
        "trace-store",
        traces_with_partner_hop,
        "a sample-service trace with a partner.fetch span holds the per-function spans and the "
        "partner API's spans, linked, also when fetched by id",
    ),
    Row(
        "traces-by-id-with-attributes",
        "traces",
        "trace-store",
        traces_by_id_with_attributes,
        "our own requests' trace ids come back with their spans' attributes (http.route, status, method)",
    ),
    Row(
        "traces-every-function-span",
        "traces",
        "trace-store",
        every_function_span,
        "every per-function span name appears in some trace",
    ),
    Row(
        "span-metrics",
        "traces->metrics",
        "prometheus",
        span_metrics,
        "collector spanmetrics pushed over OTLP: native per-function latency histograms with exemplars",
    ),
    Row(
        "access-logs",
        "logs",
        "opensearch",
        access_logs,
        "access log documents with route, status, duration and trace id",
    ),
    Row(
        "logs-by-trace-id",
        "logs+traces",
        "opensearch",
        logs_by_trace_id,
        "a trace id from the trace store finds its log documents",
    ),
    Row(
        "collector-accepted",
        "self-telemetry",
        "prometheus",
        collector_accepted,
        "the collector accepted spans and log records",
    ),
    Row(
        "collector-nothing-lost",
        "self-telemetry",
        "prometheus",
        collector_nothing_lost,
        "the collector refused nothing and failed to send nothing",
    ),
]
