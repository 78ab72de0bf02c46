"""The hand-written OTLP encoder must produce what the SDK's encoder produces: its bytes, parsed with the
official opentelemetry-proto messages, equal the SDK encoder's message — for spans and log records
of every shape (events, links, remote parents, trace state, statuses, all attribute types, several
resources and scopes)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from sample_service.telemetry import otlp_wire

RESOURCE_A = Resource.create(
    {"service.name": "svc-a", "service.version": "1.2.3", "x.int": 7, "x.flag": True}
)
RESOURCE_B = Resource(
    {"service.name": "svc-b", "weird": "ü✓"}, schema_url="https://opentelemetry.io/schemas/1.21.0"
)


def _sdk_tracer(provider: TracerProvider, *args: Any, **kwargs: Any) -> Any:
    return provider.get_tracer(*args, **kwargs)


def _spans(tracer_of: Callable[..., Any] = _sdk_tracer, id_generator: Any = None) -> list:
    """Spans of every shape; ``tracer_of(provider, name, ...)`` picks the tracer implementation
    (tests/unit/test_telemetry_lean_trace.py runs the same scenario through the lean tracer)."""
    exported = InMemorySpanExporter()
    providers = []
    for resource in (RESOURCE_A, RESOURCE_B):
        p = TracerProvider(
            resource=resource,
            shutdown_on_exit=False,
            span_limits=SpanLimits(max_span_attributes=12, max_events=2, max_links=1),
            **({"id_generator": id_generator} if id_generator is not None else {}),
        )
        p.add_span_processor(SimpleSpanProcessor(exported))
        providers.append(p)
    t1 = tracer_of(providers[0], "scope.one", "0.1", schema_url="https://example.com/s", attributes={"sa": 1})
    t2 = tracer_of(providers[0], "scope.two")
    t1_again = tracer_of(
        providers[0], "scope.one", "0.1", schema_url="https://example.com/s", attributes={"sa": 1}
    )
    t3 = tracer_of(providers[1], "")

    remote = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
    )
    with t1.start_as_current_span(
        "GET /v1/things/{id}",
        kind=SpanKind.SERVER,
        context=set_span_in_context(NonRecordingSpan(remote)),
        attributes={
            "http.request.method": "GET",
            "http.response.status_code": 200,
            "neg": -5,
            "big": 2**62,
            "zero": 0,
            "ratio": 0.25,
            "f0": 0.0,
            "no": False,
            "yes": True,
            "empty": "",
            "long": "x" * 500,
            "strs": ("a", "b"),
            "ints": [1, -2],
            "many": 1,
        },
    ) as server:
        server.set_attribute("overflow", "dropped")  # 15th attribute: limit 12 → dropped count
        server.add_event("e1", {"k": "v"})
        server.add_event("e2")
        server.add_event("e3")  # max_events=2 → dropped_events
        with t2.start_as_current_span("child", links=[Link(remote, {"l": 1}), Link(remote)]) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
            try:
                raise ValueError("nope")
            except ValueError as exc:
                child.record_exception(exc)
        with t1_again.start_as_current_span("ok") as ok:
            ok.set_status(Status(StatusCode.OK))
    with t3.start_as_current_span("", kind=SpanKind.CONSUMER):
        pass
    with t3.start_as_current_span("producer ✓", kind=SpanKind.PRODUCER, attributes={}):
        pass
    with t2.start_as_current_span(
        "client",
        kind=SpanKind.CLIENT,
        context=set_span_in_context(
            NonRecordingSpan(SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(1)))
        ),
    ):
        pass
    return list(exported.get_finished_spans())


def test_spans_parse_equal_to_the_sdk_encoding() -> None:
    spans = _spans()
    assert len(spans) == 6
    ours = ExportTraceServiceRequest.FromString(otlp_wire.encode_spans(spans))
    assert ours == sdk_encode_spans(spans)
    assert [len(rs.scope_spans) for rs in ours.resource_spans] == [
        2,
        1,
    ]  # equal scopes merged, as the SDK does
    assert sum(len(ss.spans) for rs in ours.resource_spans for ss in rs.scope_spans) == 6
    # and again, now from the caches (attribute pairs, resource and scope blocks)
    assert ExportTraceServiceRequest.FromString(otlp_wire.encode_spans(spans)) == sdk_encode_spans(spans)
    # one span at a time as well (each its own request)
    for s in spans:
        assert ExportTraceServiceRequest.FromString(otlp_wire.encode_spans([s])) == sdk_encode_spans([s])


def test_empty_batches() -> None:
    assert otlp_wire.encode_spans([]) == b""
    assert ExportTraceServiceRequest.FromString(b"") == sdk_encode_spans([])


def _log_records() -> list:
    exported = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE_A, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exported))
    logger = provider.get_logger("sample_service.access", "0.1")
    other = provider.get_logger("other")
    from opentelemetry._logs import LogRecord, SeverityNumber

    logger.emit(
        LogRecord(
            timestamp=1_700_000_000_000_000_001,
            observed_timestamp=1_700_000_000_000_000_002,
            trace_id=0x1234,
            span_id=0x99,
            trace_flags=TraceFlags(1),
            severity_text="INFO",
            severity_number=SeverityNumber.INFO,
            body="request",
            attributes={
                "http.route": "/v1/x",
                "http.response.status_code": 200,
                "duration_s": 0.0012,
                "ok": False,
                "blob": b"\x00\x01",
                "nested": {"a": 1, "b": ["x", 2.5]},
                "list": [True, None],
            },
        )
    )
    logger.emit(
        LogRecord(
            body={"structured": {"k": "v"}}, severity_number=SeverityNumber.ERROR, event_name="thing.happened"
        )
    )
    other.emit(LogRecord(body=None))
    other.emit(LogRecord(body=42, trace_id=0, span_id=0, trace_flags=TraceFlags(0)))
    return list(exported.get_finished_logs())


def test_log_records_parse_equal_to_the_sdk_encoding() -> None:
    batch = _log_records()
    assert len(batch) == 4
    for _ in range(2):
        assert ExportLogsServiceRequest.FromString(otlp_wire.encode_logs(batch)) == sdk_encode_logs(batch)
    for rec in batch:
        assert ExportLogsServiceRequest.FromString(otlp_wire.encode_logs([rec])) == sdk_encode_logs([rec])


def test_attribute_cache_is_bounded_and_type_exact() -> None:
    enc = otlp_wire._attributes_for(b"\x4a")
    # True == 1 == 1.0 hash alike: the cache must not hand one's bytes to another
    assert enc({"k": True}) != enc({"k": 1}) != enc({"k": 1.0})
    for i in range(otlp_wire._KV_CACHE_MAX + 10):
        enc({"k": i})
    assert enc({"k": 3}) == otlp_wire._ld(b"\x4a", otlp_wire._key_value("k", 3))


def test_bad_attribute_is_skipped_and_logged(caplog: logging.LogCaptureFixture) -> None:
    enc = otlp_wire._attributes_for(b"\x4a")
    with caplog.at_level(logging.ERROR):
        out = enc({"good": "v", "bad": object()})
    assert out == otlp_wire._ld(b"\x4a", otlp_wire._key_value("good", "v"))
    assert "bad" in caplog.text


def test_http_exporters_send_the_wire_encoding_to_a_real_receiver() -> None:
    """The swapped-in exporters POST exactly the bytes otlp_wire makes, over real HTTP, and report
    success; against a refused port they fail (bounded) instead of raising."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sample_service.telemetry.otlp_http import WireOTLPLogExporter, WireOTLPSpanExporter
    from tests.unit.test_telemetry_support import unused_port

    received: dict[str, bytes] = {}

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        spans, logs = _spans(), _log_records()
        from opentelemetry.sdk._logs.export import LogRecordExportResult
        from opentelemetry.sdk.trace.export import SpanExportResult

        assert WireOTLPSpanExporter(endpoint=f"{base}/v1/traces").export(spans) is SpanExportResult.SUCCESS
        assert WireOTLPLogExporter(endpoint=f"{base}/v1/logs").export(logs) is LogRecordExportResult.SUCCESS
        assert ExportTraceServiceRequest.FromString(received["/v1/traces"]) == sdk_encode_spans(spans)
        assert ExportLogsServiceRequest.FromString(received["/v1/logs"]) == sdk_encode_logs(logs)
    finally:
        server.shutdown()
    dead = WireOTLPSpanExporter(endpoint=f"http://127.0.0.1:{unused_port()}/v1/traces", timeout=0.5)
    assert dead.export(spans) is SpanExportResult.FAILURE
