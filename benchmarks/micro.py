"""Per-item CPU cost of each piece of the telemetry pipeline, measured in-process (no server, no wrk):

    python -m benchmarks.micro            # µs per item, median of 5 repeats; pin it: taskset -c 1 …

What one traced request costs the process beyond the app's work is roughly: the server span's
start+end (on the event loop), one histogram observe with exemplar, one access record enqueued —
and, later on background threads that still need the GIL, the access record's JSON line and OTel
translation, the span's and the record's OTLP protobuf encoding. This puts a number on each, so a
profile's percentages can be read as microseconds. Printed, never asserted.

Last, an interleaved A/B of native histograms (``O11Y_NATIVE_HISTOGRAMS``, issue 14): a request's
metric recording (server histogram + three DB statements + the rule-set histogram, the evaluate
route's shape) and one /metrics body, each with native buckets off and on, the arms alternating
(ABBA) ``--pairs`` times in the same process; per pair the on/off ratio, reported as a range.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from opentelemetry.context import attach, detach
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import SpanKind, set_span_in_context
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from benchmarks.app import HashOnceResource
from sample_service.domain_metrics import DomainMetrics
from sample_service.telemetry.exemplars import exemplar_for
from sample_service.telemetry.logs import JsonLinesFormatter, TraceContextLoggingHandler
from sample_service.telemetry.metrics import ServiceMetrics
from sample_service.telemetry.native_histograms import NativeIndex, encode_protobuf
from sample_service.telemetry.providers import build_resource, tracer_for


def _time(fn: Callable[[], Any], n: int) -> float:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


def _request_metrics(
    metrics: ServiceMetrics, domain: DomainMetrics, seconds: list[float], ex: dict[str, str] | None
) -> Callable[[], None]:
    """One evaluate request's metric recording, the durations cycling through ``seconds``."""
    n = len(seconds)
    state = [0]

    def run() -> None:
        i = state[0] = (state[0] + 1) % n
        d = seconds[i]
        for op in ("SELECT", "SELECT", "INSERT"):
            metrics.db_operation("postgresql", op, d / 20, ex)
        domain.rules_evaluated("standard", "approve", d / 50, 12, ex)
        metrics.http_server_request("POST", "/v1/evaluate", "200", "", d, ex)

    return run


def native_histograms_ab(pairs: int, ex: dict[str, str] | None) -> list[str]:
    """Native buckets off (A) vs on (B), interleaved ABBA in one process; lines to print."""
    rng = random.Random(14)
    # Log-uniform 100 us .. 2 s: every observe lands in a different native bucket, as in real traffic.
    seconds = [math.exp(rng.uniform(math.log(1e-4), math.log(2.0))) for _ in range(4096)]
    arms: dict[str, tuple[Callable[[], None], Callable[[], bytes]]] = {}
    for name, native in (("off", None), ("on", NativeIndex())):
        registry = CollectorRegistry()
        metrics = ServiceMetrics(registry, native)
        record = _request_metrics(metrics, DomainMetrics(registry, native), seconds, ex)
        for _ in range(20_000):  # every child and native bucket the run will touch exists already
            record()
        # What Prometheus gets: OpenMetrics without native buckets, the protobuf format with them.
        scrape: Callable[[], bytes] = (
            partial(openmetrics_latest, registry)
            if native is None
            else partial(encode_protobuf, registry, native)
        )
        arms[name] = (record, scrape)
    per_request: dict[str, list[float]] = {"off": [], "on": []}
    per_scrape: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(pairs):
        for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
            record, scrape = arms[name]
            per_request[name].append(_time(record, 20_000))
            per_scrape[name].append(_time(scrape, 50))
    lines = [f"native histograms off vs on, interleaved ABBA, {pairs} pairs (µs, median of 5 per run):"]
    cases = (("request's metric recording (5 observes)", per_request), ("/metrics body", per_scrape))
    for what, runs in cases:
        ratios = sorted(b / a for a, b in zip(runs["off"], runs["on"], strict=True))
        off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
        lines.append(
            f"  {what}: off {off:.2f} µs, on {on:.2f} µs (+{on - off:.2f} µs); on/off per pair "
            f"{ratios[0]:.2f}-{ratios[-1]:.2f}, median {statistics.median(ratios):.2f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=7, help="A/B pairs of the native-histograms arm")
    ap.add_argument("--only-native", action="store_true", help="run the native-histograms arm only")
    args = ap.parse_args(argv)
    if args.only_native:
        tracer = TracerProvider(shutdown_on_exit=False).get_tracer("bench")
        for line in native_histograms_ab(args.pairs, exemplar_for(tracer.start_span("x"))):
            print(line)
        return 0
    resource = build_resource("sample-service", "bench")
    results: list[tuple[str, float]] = []

    # Spans: start + end of a SERVER span with the middleware's attributes (no processor: pure SDK).
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer = provider.get_tracer("bench")
    attrs = {
        "http.request.method": "GET",
        "url.path": "/bench/trivial",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "client.address": "127.0.0.1",
        "user_agent.original": "wrk",
    }

    def server_span(t: Any) -> Callable[[], None]:
        def run() -> None:
            s = t.start_span("GET", kind=SpanKind.SERVER, attributes=attrs)
            s.update_name("GET /bench/trivial")
            s.set_attributes({"http.route": "/bench/trivial", "http.response.status_code": 200})
            s.end()

        return run

    one_span = server_span(tracer)
    results.append(("span start+end (server span, 8 attributes)", _time(one_span, 20_000)))

    # The same through the service's tracer (lean_trace.LeanTracer over the same provider), and a
    # request's shape: server span activated, one child span, both ended — SDK vs lean, same process.
    lean = tracer_for(provider, "bench")
    results.append(("  … the same, LeanTracer", _time(server_span(lean), 20_000)))
    # 10 % head sampling (parentbased_traceidratio): 9 requests in 10 get a non-recording span.
    sampled = TracerProvider(resource=resource, shutdown_on_exit=False, sampler=ParentBasedTraceIdRatio(0.1))
    results.append(("  … SDK tracer, 10 % sampled (parentbased_traceidratio)",
                    _time(server_span(sampled.get_tracer("bench")), 20_000)))
    results.append(("  … LeanTracer, 10 % sampled", _time(server_span(tracer_for(sampled, "bench")), 20_000)))

    def request_shape(t: Any) -> Callable[[], None]:
        def run() -> None:
            s = t.start_span("GET", kind=SpanKind.SERVER, attributes=attrs)
            token = attach(set_span_in_context(s))
            with t.start_as_current_span("child"):
                pass
            detach(token)
            s.set_attributes({"http.route": "/bench/trivial", "http.response.status_code": 200})
            s.end()

        return run

    results.append(("server span + child span + context (SDK tracer)", _time(request_shape(tracer), 20_000)))
    results.append(("  … the same, LeanTracer", _time(request_shape(lean), 20_000)))

    # Finished spans for the encoder.
    mem = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    for _ in range(512):
        one_span()
    spans = mem.get_finished_spans()
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    results.append(("OTLP encode, per span (batch of 512)", _time(lambda: encode_spans(spans), 20) / 512))
    results.append(("  … of which Resource.__hash__ (once per span)", _time(lambda: hash(resource), 20_000)))
    results.append(
        (
            "OTLP encode + serialize, per span",
            _time(lambda: encode_spans(spans).SerializePartialToString(), 20) / 512,
        )
    )

    # Metrics: the RED histogram observe with an exemplar.
    metrics = ServiceMetrics(CollectorRegistry())
    span = tracer.start_span("x")
    results.append(("exemplar_for(span)", _time(lambda: exemplar_for(span), 50_000)))
    ex = exemplar_for(span)
    results.append(
        (
            "http_server_request (histogram observe + exemplar)",
            _time(lambda: metrics.http_server_request("GET", "/bench/trivial", "200", "", 0.001, ex), 50_000),
        )
    )

    # Logs: the access record's JSON line and its OTel translation (both on the dispatcher thread).
    record = logging.LogRecord("sample_service.access", logging.INFO, "", 0, "request", None, None)
    record.__dict__.update(
        {
            "http.request.method": "GET",
            "http.route": "/bench/trivial",
            "url.path": "/x",
            "http.response.status_code": 200,
            "duration_s": 0.001,
            "otel_trace_id": 1 << 100,
            "otel_span_id": 1 << 50,
            "otel_trace_flags": 1,
        }
    )
    fmt = JsonLinesFormatter()
    results.append(("access record → JSON line (orjson)", _time(lambda: fmt.format(record), 50_000)))
    log_mem = InMemoryLogRecordExporter()
    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_mem))
    handler = TraceContextLoggingHandler(logger_provider=lp)
    results.append(
        ("access record → OTel LogRecord (LoggingHandler.emit)", _time(lambda: handler.emit(record), 20_000))
    )
    logs = log_mem.get_finished_logs()[:512]
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    results.append(
        ("OTLP encode, per log record (batch of 512)", _time(lambda: encode_logs(logs), 20) / len(logs))
    )

    fast = HashOnceResource(resource.attributes, resource.schema_url)
    provider2 = TracerProvider(resource=fast, shutdown_on_exit=False)
    mem2 = InMemorySpanExporter()
    provider2.add_span_processor(SimpleSpanProcessor(mem2))
    t2 = provider2.get_tracer("bench")
    for _ in range(512):
        s = t2.start_span("GET", kind=SpanKind.SERVER, attributes=attrs)
        s.set_attributes({"http.route": "/bench/trivial", "http.response.status_code": 200})
        s.end()
    spans2 = mem2.get_finished_spans()
    results.append(
        ("OTLP encode, per span, Resource hash cached", _time(lambda: encode_spans(spans2), 20) / 512)
    )

    width = max(len(n) for n, _ in results)
    print(f"python {sys.version.split()[0]}; µs per item, median of 5 repeats")
    for name, us in results:
        print(f"  {name:<{width}}  {us:8.2f} µs")
    for line in native_histograms_ab(args.pairs, ex):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
