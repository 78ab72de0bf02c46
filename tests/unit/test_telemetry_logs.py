"""Logs: every record carries trace_id/span_id (OTLP and JSON stdout); one access record per request."""

from __future__ import annotations

import logging
import threading

import orjson
import pytest

from sample_service.telemetry import catalog
from sample_service.telemetry.logs import ACCESS_LOGGER
from tests.unit.test_telemetry_support import Rig, build_app, client_for, poll_until


def exported_logs(rig: Rig, at_least: int) -> list:
    def ready() -> list:
        assert rig.tel.logger_provider is not None
        rig.tel.logger_provider.force_flush()
        logs = list(rig.logs.get_finished_logs())
        return logs if len(logs) >= at_least else []

    return poll_until(ready, f"{at_least} exported log records")


def stdout_lines(rig: Rig, at_least: int) -> list[dict]:
    def ready() -> list[dict]:
        lines = [orjson.loads(line) for line in rig.stdout.getvalue().splitlines()]
        return lines if len(lines) >= at_least else []

    return poll_until(ready, f"{at_least} JSON lines on stdout")


async def test_records_carry_trace_context_and_access_record_exists(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        assert (await client.get("/log")).status_code == 200
    spans = {s.name: s for s in rig.finished_spans()}
    server, inner = spans["GET /log"], spans["demo.logging"]

    logs = exported_logs(rig, at_least=2)
    by_logger = {}
    for log in logs:
        by_logger.setdefault(log.instrumentation_scope.name, []).append(log.log_record)

    [warning] = by_logger["tests.demo"]
    assert warning.body == "inside span"
    assert warning.trace_id == server.context.trace_id
    assert warning.span_id == inner.context.span_id  # the innermost span current at the log call
    assert warning.attributes["demo.key"] == "v"
    assert not any(k.startswith("otel_") for k in warning.attributes)

    [access] = by_logger[ACCESS_LOGGER]
    assert access.trace_id == server.context.trace_id and access.span_id == server.context.span_id
    assert access.attributes[catalog.A.HTTP_ROUTE] == "/log"
    assert access.attributes[catalog.A.HTTP_METHOD] == "GET"
    assert access.attributes[catalog.A.HTTP_STATUS] == 200
    duration = access.attributes[catalog.A.DURATION_S]
    assert isinstance(duration, float) and 0 < duration < 1.0

    lines = stdout_lines(rig, at_least=2)
    [json_warning] = [line for line in lines if line["logger"] == "tests.demo"]
    assert json_warning["trace_id"] == format(server.context.trace_id, "032x")
    assert json_warning["span_id"] == format(inner.context.span_id, "016x")
    assert json_warning["level"] == "WARNING" and json_warning["demo.key"] == "v"
    [json_access] = [line for line in lines if line["logger"] == ACCESS_LOGGER]
    assert json_access[catalog.A.HTTP_ROUTE] == "/log"
    assert json_access[catalog.A.DURATION_S] == pytest.approx(duration)
    assert json_access["span_id"] == format(server.context.span_id, "016x")


async def test_one_access_record_per_request_and_none_for_excluded_paths(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        for i in range(3):
            await client.get(f"/items/{i}")
        await client.get("/healthz")
    # The three access lines, then a marker: once the marker is written everything before it is too.
    logging.getLogger("tests.marker").warning("end")
    lines = stdout_lines(rig, at_least=4)
    access = [line for line in lines if line["logger"] == ACCESS_LOGGER]
    assert [line[catalog.A.URL_PATH] for line in access] == ["/items/0", "/items/1", "/items/2"]
    assert {line[catalog.A.HTTP_ROUTE] for line in access} == {"/items/{item_id}"}


def test_formatting_and_export_happen_off_the_calling_thread(rig: Rig) -> None:
    """The caller only enqueues: the OTel translation runs on the dispatcher thread."""
    seen: list[int] = []
    assert rig.tel.logger_provider is not None
    handler_thread_probe = logging.Filter()

    def record_thread(record: logging.LogRecord) -> bool:
        seen.append(threading.get_ident())
        return True

    handler_thread_probe.filter = record_thread  # type: ignore[method-assign]
    pipeline = rig.tel._log_pipeline
    assert pipeline is not None and pipeline._otel is not None
    pipeline._otel.addFilter(handler_thread_probe)
    logging.getLogger("tests.thread").warning("hello")
    poll_until(lambda: seen, "the OTel handler to see the record")
    assert seen[0] != threading.get_ident()


def test_sdk_own_warnings_are_not_exported(rig: Rig) -> None:
    logging.getLogger("opentelemetry.sdk.test").warning("exporter trouble")
    logging.getLogger("tests.after").warning("after")
    lines = stdout_lines(rig, at_least=2)
    assert {line["logger"] for line in lines} >= {"opentelemetry.sdk.test", "tests.after"}
    logs = exported_logs(rig, at_least=1)
    # Only this test's two loggers matter: a record another test's httpx client logs late from its
    # own thread may land here too (it went through the root logger like any application record).
    scopes = [log.instrumentation_scope.name for log in logs if log.instrumentation_scope.name != "httpx"]
    assert scopes == ["tests.after"]


def test_direct_access_record_encodes_like_the_sdk_route() -> None:
    """The service's set-up (batch processors only) queues AccessLogRecords directly; any other
    set-up goes through the SDK Logger. Both must export the same OTLP record."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        BatchLogRecordProcessor,
        InMemoryLogRecordExporter,
        SimpleLogRecordProcessor,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import SpanContext, TraceFlags

    from sample_service.telemetry import otlp_wire
    from sample_service.telemetry.logs import AccessLogRecord, LogPipeline

    resource = Resource({"service.name": "svc"})
    ctx = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(3))
    encoded = []
    for direct in (True, False):
        exporter = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter) if direct else SimpleLogRecordProcessor(exporter)
        )
        pipeline = LogPipeline(level="INFO", json_stdout=False, logger_provider=provider, flush_interval_s=60)
        try:
            assert (pipeline._access_queues is not None) is direct
            pipeline.access(ctx, None, "GET", "/v1/x/{id}", "/v1/x/7", 404, "", 0.0042)
            pipeline.access(None, None, "_OTHER", "", "/nope", 400, "400", 0.001)  # no span: no ids
            pipeline.flush()
            provider.force_flush()
            records = list(exporter.get_finished_logs())
        finally:
            pipeline.close(2.0)
            provider.shutdown()
        assert len(records) == 2
        assert all(isinstance(r, AccessLogRecord) is direct for r in records)
        message = sdk_encode_logs(records)
        assert otlp_wire.encode_logs(records) == message.SerializeToString() or \
            type(message).FromString(otlp_wire.encode_logs(records)) == message
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    rec.observed_time_unix_nano = 0
                    rec.time_unix_nano = 0
        encoded.append(message)
    assert encoded[0] == encoded[1]
    record = encoded[0].resource_logs[0].scope_logs[0].log_records[0]
    assert record.trace_id == (0xABC).to_bytes(16, "big") and record.body.string_value == "request"
