"""The lean tracer must export what the SDK tracer exports: the same scenario (every span shape of
test_telemetry_otlp_wire: remote parents, trace state, events/links over their limits, attribute
limits, statuses, exceptions, several resources and scopes) run through both, with the same ids,
encodes to equal OTLP messages — times and stack traces aside, which differ by nature. Plus the
sampling decisions and the Span API rules the SDK enforces."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    get_current_span,
    set_span_in_context,
)

from sample_service.telemetry import otlp_wire
from sample_service.telemetry.lean_trace import LeanSpan, LeanTracer, lean_tracer
from sample_service.telemetry.providers import tracer_for
from tests.unit.test_telemetry_otlp_wire import _spans


class CountingIds(IdGenerator):
    def __init__(self) -> None:
        self.n = 0

    def generate_span_id(self) -> int:
        self.n += 1
        return self.n

    def generate_trace_id(self) -> int:
        self.n += 1
        return 0x1000 + self.n

    def is_trace_id_random(self) -> bool:
        return True


def _lean(provider: TracerProvider, *args, **kwargs):
    return lean_tracer(provider.get_tracer(*args, **kwargs))


def _normalised(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    for rs in request.resource_spans:
        rs.resource.ClearField("attributes")  # service.instance.id is random per Resource.create
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.start_time_unix_nano = span.end_time_unix_nano = 0
                for event in span.events:
                    event.time_unix_nano = 0
                    for kv in event.attributes:
                        if kv.key == "exception.stacktrace":
                            kv.value.string_value = "<stack>"
    return request


def test_lean_spans_encode_like_sdk_spans() -> None:
    sdk = _spans(id_generator=CountingIds())
    lean = _spans(_lean, id_generator=CountingIds())
    assert [type(s) for s in lean] == [LeanSpan] * len(sdk)
    expected = _normalised(sdk_encode_spans(sdk))
    # the wire encoder over lean spans, and the SDK's own encoder over them (the public surface)
    assert _normalised(ExportTraceServiceRequest.FromString(otlp_wire.encode_spans(lean))) == expected
    assert _normalised(sdk_encode_spans(lean)) == expected
    # the scenario really hit the limits it is about
    server = next(s for s in lean if s.name == "GET /v1/things/{id}")
    assert server.dropped_attributes == 3 and server.dropped_events == 1 and len(server.events) == 2
    child = next(s for s in lean if s.name == "child")
    assert child.dropped_links == 1 and child.status.status_code is StatusCode.ERROR


def _provider(sampler=None, **kwargs) -> tuple[TracerProvider, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False, **({"sampler": sampler} if sampler else {}), **kwargs)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return provider, exported


class _PickyRatio(sampling.TraceIdRatioBased):
    """A subclass that decides otherwise: the lean tracer must ask it, not apply the ratio rule."""

    def should_sample(self, parent_context, trace_id, *args, **kwargs):  # type: ignore[no-untyped-def]
        return sampling.ALWAYS_ON.should_sample(parent_context, trace_id, *args, **kwargs)


_SAMPLERS = [
    sampling.ALWAYS_ON,
    sampling.ALWAYS_OFF,
    sampling.DEFAULT_ON,
    sampling.DEFAULT_OFF,
    sampling.TraceIdRatioBased(0.5),
    sampling.TraceIdRatioBased(0.0),
    sampling.TraceIdRatioBased(1.0),
    sampling.ParentBasedTraceIdRatio(0.5),
    sampling.ParentBased(sampling.TraceIdRatioBased(0.25)),
    # not the default delegates, or a sampler of its own: asked, not short-cut
    sampling.ParentBased(sampling.ALWAYS_ON, remote_parent_not_sampled=sampling.ALWAYS_ON),
    sampling.ParentBased(_PickyRatio(0.0)),
]


@pytest.mark.parametrize("sampler", _SAMPLERS, ids=lambda s: s.get_description())
def test_sampling_decisions_flags_and_trace_state_match_the_sdk(sampler) -> None:
    provider, _ = _provider(sampler)
    sdk = provider.get_tracer("t")
    lean = tracer_for(provider, "t")
    assert isinstance(lean, LeanTracer)
    vendor = TraceState([("vendor", "v1")])
    parents = [
        None,
        SpanContext(0x42, 0x7, is_remote=True, trace_flags=TraceFlags(1), trace_state=vendor),
        SpanContext(0x42, 0x7, is_remote=True, trace_flags=TraceFlags(0), trace_state=vendor),
        SpanContext(0x43, 0x8, is_remote=False, trace_flags=TraceFlags(3)),
        SpanContext(0x43, 0x8, is_remote=False, trace_flags=TraceFlags(2)),
        SpanContext(2**127 - 1, 0x9, is_remote=True, trace_flags=TraceFlags(1)),  # ratio sampler: high id
    ]
    decided = set()
    for parent in parents:
        ctx = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        for _ in range(40):  # root spans: random trace ids, both decisions of a ratio sampler
            a = sdk.start_span("x", context=ctx)
            b = lean.start_span("x", context=ctx)
            got = b.get_span_context()
            if parent is not None:
                assert a.is_recording() == b.is_recording()
                assert a.get_span_context().trace_flags == got.trace_flags
                assert a.get_span_context().trace_id == got.trace_id == parent.trace_id
            else:
                # The same trace id through the SDK's own sampler: the decision the SDK would take.
                want = sampler.should_sample(None, got.trace_id, "x").decision.is_sampled()
                assert b.is_recording() == want == got.trace_flags.sampled
                assert got.trace_flags.random_trace_id
                assert got.is_valid
                decided.add(want)
            assert got.trace_state == a.get_span_context().trace_state
            assert isinstance(got.trace_state, TraceState)
            a.end()
            b.end()
    if "{0.5}" in sampler.get_description():
        assert decided == {True, False}  # both branches of the ratio rule were taken


def test_span_api_rules() -> None:
    provider, exported = _provider(span_limits=SpanLimits(max_span_attributes=3, max_span_attribute_length=4))
    tracer = tracer_for(provider, "t")
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={"a": "long value"}) as outer:
        assert get_current_span() is outer
        outer.set_attribute("b", object())  # not a valid value: str() of it, like the SDK
        outer.set_attributes({"c": 1, "d": 2})  # limit 3: the oldest goes
        outer.set_status(Status(StatusCode.OK))
        outer.set_status(StatusCode.ERROR)  # OK is final
        outer.update_name("renamed")
    assert not outer.is_recording()
    outer.end()  # a second end is a no-op (warned), not a second export
    span = exported.get_finished_spans()[0]
    assert span is outer and span.name == "renamed" and span.kind is SpanKind.SERVER
    assert list(span.attributes) == ["b", "c", "d"] and span.dropped_attributes == 1
    assert span.status.status_code is StatusCode.OK
    assert len(exported.get_finished_spans()) == 1

    with pytest.raises(KeyError):
        with tracer.start_as_current_span("fails") as failing:
            raise KeyError("k")
    assert failing.status.status_code is StatusCode.ERROR
    assert failing.status.description == "KeyError: 'k'"
    (event,) = failing.events
    assert event.name == "exception" and event.attributes["exception.type"] == "KeyError"
    assert get_current_span() is not failing  # detached on the way out

    # a BaseException that is not an error (GeneratorExit, KeyboardInterrupt) is not recorded
    with pytest.raises(KeyboardInterrupt):
        with tracer.start_as_current_span("interrupted") as interrupted:
            raise KeyboardInterrupt
    assert interrupted.status.status_code is StatusCode.UNSET and not interrupted.events


def test_setting_on_an_ended_span_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    provider, _ = _provider()
    span = tracer_for(provider, "t").start_span("x")
    span.end()
    with caplog.at_level(logging.WARNING):
        span.set_attribute("late", 1)
    assert "late" not in span.attributes and "ended span" in caplog.text


def test_disabled_sdk_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider = TracerProvider(shutdown_on_exit=False)
    assert not isinstance(tracer_for(provider, "t"), LeanTracer)
