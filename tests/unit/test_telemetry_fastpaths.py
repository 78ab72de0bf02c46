"""The cheaper paths of the telemetry (docs/telemetry.md, "Cost"): same data as the SDK's own paths."""

from __future__ import annotations

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk.trace import SpanLimits, TracerProvider, sampling

from sample_service.telemetry import catalog
from sample_service.telemetry.logs import ACCESS_LOGGER
from sample_service.telemetry.sampler_rules import sampler_ignores_attributes
from sample_service.telemetry.spans import set_clean_attributes
from tests.unit.test_telemetry_support import Rig, build_app, client_for, poll_until


def test_clean_attributes_land_like_set_attributes() -> None:
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("t")
    fast, slow = tracer.start_span("a"), tracer.start_span("b")
    attrs = {"http.route": "/x/{id}", "http.response.status_code": 200, "flag": True, "ratio": 0.5}
    set_clean_attributes(fast, attrs)
    slow.set_attributes(attrs)
    assert dict(fast.attributes) == dict(slow.attributes) == attrs
    fast.end()
    set_clean_attributes(fast, {"late": "x"})  # ended: the SDK's path, which refuses
    assert "late" not in fast.attributes


def test_clean_attributes_still_honour_limits() -> None:
    limits = SpanLimits(max_span_attributes=2, max_span_attribute_length=3)
    tracer = TracerProvider(shutdown_on_exit=False, span_limits=limits).get_tracer("t")
    span = tracer.start_span("a")
    set_clean_attributes(span, {"a": "abcdef", "b": "x", "c": "y"})
    assert len(span.attributes) == 2 and span.dropped_attributes == 1
    assert all(len(v) <= 3 for v in span.attributes.values())


def test_only_attribute_blind_samplers_skip_start_attributes() -> None:
    def tracer(sampler: sampling.Sampler) -> object:
        return TracerProvider(sampler=sampler, shutdown_on_exit=False).get_tracer("t")

    assert sampler_ignores_attributes(tracer(sampling.ParentBased(sampling.ALWAYS_ON)))
    assert sampler_ignores_attributes(tracer(sampling.ALWAYS_ON))
    assert sampler_ignores_attributes(tracer(sampling.ParentBased(sampling.TraceIdRatioBased(0.5))))
    assert sampler_ignores_attributes(tracer(sampling.TraceIdRatioBased(0.5)))
    assert sampler_ignores_attributes(tracer(sampling.ParentBasedTraceIdRatio(0.5)))

    class ReadsAttributes(sampling.TraceIdRatioBased):  # a subclass may look at them
        pass

    assert not sampler_ignores_attributes(tracer(ReadsAttributes(0.5)))
    assert not sampler_ignores_attributes(tracer(sampling.ParentBased(ReadsAttributes(0.5))))


async def test_access_record_emitted_directly_carries_context_and_catalog_attributes(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        assert (await client.get("/items/7")).status_code == 200
        assert (await client.get("/unavailable")).status_code == 503
    servers = {s.name: s for s in rig.finished_spans() if s.parent is None}

    def access_logs() -> list:
        assert rig.tel.force_flush()
        logs = [r for r in rig.logs.get_finished_logs() if r.instrumentation_scope.name == ACCESS_LOGGER]
        return logs if len(logs) >= 2 else []

    by_route = {
        r.log_record.attributes[catalog.A.HTTP_ROUTE]: r.log_record for r in poll_until(access_logs, "2")
    }
    ok, failed = by_route["/items/{item_id}"], by_route["/unavailable"]
    server = servers["GET /items/{item_id}"]
    assert (ok.trace_id, ok.span_id) == (server.context.trace_id, server.context.span_id)
    assert int(ok.trace_flags) == int(server.context.trace_flags) and ok.trace_flags.sampled
    assert ok.body == "request" and ok.severity_text == "INFO" and ok.severity_number is SeverityNumber.INFO
    assert dict(ok.attributes) == {
        catalog.A.HTTP_METHOD: "GET",
        catalog.A.HTTP_ROUTE: "/items/{item_id}",
        catalog.A.URL_PATH: "/items/7",
        catalog.A.HTTP_STATUS: 200,
        catalog.A.DURATION_S: pytest.approx(ok.attributes[catalog.A.DURATION_S]),
    }
    assert ok.timestamp and ok.observed_timestamp >= ok.timestamp
    assert failed.attributes[catalog.A.ERROR_TYPE] == "503"
    assert failed.span_id == servers["GET /unavailable"].context.span_id


async def test_access_records_respect_the_access_logger_level(rig: Rig) -> None:
    import logging

    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.WARNING)
    try:
        async with client_for(build_app(rig.tel)) as client:
            await client.get("/items/1")
        rig.tel.force_flush()
        assert not [r for r in rig.logs.get_finished_logs() if r.instrumentation_scope.name == ACCESS_LOGGER]
    finally:
        access.setLevel(logging.NOTSET)
