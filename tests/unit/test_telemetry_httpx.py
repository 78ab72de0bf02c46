"""Outgoing calls: CLIENT span, W3C propagation to the callee, http.client.request.duration."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.trace import SpanKind, StatusCode

from sample_service.telemetry import catalog
from tests.unit.test_telemetry_support import Rig, client_for, make_rig


def build_pair(rig: Rig) -> FastAPI:
    partner = FastAPI()

    @partner.get("/v1/score/{user_id}")
    async def score(user_id: int, request: Request) -> dict:
        return {"score": 0.5, "traceparent": request.headers.get("traceparent")}

    @partner.get("/v1/broken")
    async def broken() -> dict:
        raise RuntimeError("partner down")

    rig.tel.instrument_app(partner)
    partner_client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=partner, raise_app_exceptions=False), base_url="http://partner:8001"
    )
    rig.tel.instrument_httpx(partner_client)

    caller = FastAPI()

    @caller.get("/evaluate/{user_id}")
    async def evaluate(user_id: int) -> dict:
        response = await partner_client.get(f"/v1/score/{user_id}")
        return {"partner": response.json(), "broken": (await partner_client.get("/v1/broken")).status_code}

    rig.tel.instrument_app(caller)
    return caller


async def test_partner_hop_is_one_trace_with_client_span_between(rig: Rig) -> None:
    async with client_for(build_pair(rig)) as client:
        body = (await client.get("/evaluate/7")).json()
    spans = rig.finished_spans()
    [caller] = [s for s in spans if s.name == "GET /evaluate/{user_id}"]
    [partner] = [s for s in spans if s.name == "GET /v1/score/{user_id}"]
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(clients) == 2
    ok = next(s for s in clients if s.attributes["http.response.status_code"] == 200)

    assert {s.context.trace_id for s in spans} == {caller.context.trace_id}
    assert ok.parent is not None and ok.parent.span_id == caller.context.span_id
    assert partner.parent is not None and partner.parent.span_id == ok.context.span_id
    version, trace_id, parent_id, flags = body["partner"]["traceparent"].split("-")
    assert (version, trace_id, parent_id) == (
        "00",
        format(caller.context.trace_id, "032x"),
        format(ok.context.span_id, "016x"),
    )
    assert int(flags, 16) & 0x01  # sampled (0x02, "random trace id", may be set too)
    assert ok.name == "GET"
    assert ok.attributes["server.address"] == "partner"
    assert ok.attributes["server.port"] == 8001
    assert ok.attributes["url.full"] == "http://partner:8001/v1/score/7"

    failed = next(s for s in clients if s.attributes["http.response.status_code"] == 500)
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "500"
    assert body["broken"] == 500

    samples = rig.scrape()[catalog.HTTP_CLIENT_DURATION.prom]
    counts = {
        (
            s.labels[catalog.L.SERVER_ADDRESS],
            s.labels[catalog.L.HTTP_STATUS],
            s.labels[catalog.L.ERROR_TYPE],
        ): s.value
        for s in samples
        if s.name.endswith("_count")
    }
    assert counts == {("partner", "200", ""): 1, ("partner", "500", "500"): 1}
    exemplar_spans = {s.exemplar.labels["span_id"] for s in samples if s.exemplar is not None}
    assert format(ok.context.span_id, "016x") in exemplar_spans


async def test_transport_errors_are_recorded_and_reraised(rig: Rig) -> None:
    client = httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=0.5)  # discard port: refused
    rig.tel.instrument_httpx(client)
    with rig.tel.tracer.start_as_current_span("parent"):
        with pytest.raises(httpx.ConnectError):
            await client.get("/x")
    await client.aclose()
    [span] = [s for s in rig.finished_spans() if s.kind is SpanKind.CLIENT]
    assert span.attributes["error.type"] == "ConnectError"
    assert span.status.status_code is StatusCode.ERROR
    samples = rig.scrape()[catalog.HTTP_CLIENT_DURATION.prom]
    [count] = [s for s in samples if s.name.endswith("_count")]
    assert count.labels[catalog.L.ERROR_TYPE] == "ConnectError" and count.labels[catalog.L.HTTP_STATUS] == ""


def _echo_headers_client(rig: Rig, propagator: object) -> httpx.AsyncClient:
    from sample_service.telemetry.httpx_client import instrument_client

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={k: v for k, v in request.headers.items()})

    client = httpx.AsyncClient(transport=httpx.MockTransport(echo), base_url="http://partner:8001")
    instrument_client(client, tracer=rig.tel.tracer, metrics=rig.tel.metrics, propagator=propagator)  # type: ignore[arg-type]
    return client


@pytest.mark.parametrize("names", ["tracecontext,baggage", "tracecontext", "baggage,tracecontext", "custom"])
async def test_injected_headers_equal_the_configured_propagators(rig: Rig, names: str) -> None:
    """The hand-written traceparent (default W3C propagators) is byte for byte what the propagator
    writes for the client span, baggage included; any other set-up goes through the propagator."""
    from opentelemetry import baggage, context
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    class Custom(TraceContextTextMapPropagator):  # not the stock class: the general path
        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            super().inject(carrier, context)
            carrier["x-custom"] = "1"

    if names == "custom":
        propagator: object = Custom()
    else:
        parts = {"tracecontext": TraceContextTextMapPropagator(), "baggage": W3CBaggagePropagator()}
        propagator = CompositePropagator([parts[n] for n in names.split(",")])
    client = _echo_headers_client(rig, propagator)
    token = context.attach(baggage.set_baggage("tenant", "t-1"))
    try:
        with rig.tel.tracer.start_as_current_span("parent"):
            sent = (await client.get("/v1/score/1")).json()
    finally:
        context.detach(token)
        await client.aclose()
    [span] = [s for s in rig.finished_spans() if s.kind is SpanKind.CLIENT]
    expected: dict[str, str] = {}
    ctx = baggage.set_baggage("tenant", "t-1", context=set_span_in_context(span))  # type: ignore[arg-type]
    propagator.inject(expected, context=ctx)  # type: ignore[attr-defined]
    assert expected
    assert {k: sent.get(k) for k in expected} == expected


async def test_unsampled_client_span_still_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    rig = make_rig()
    try:
        from opentelemetry import propagate

        client = _echo_headers_client(rig, propagate.get_global_textmap())
        sent = (await client.get("/v1/score/1")).json()
        await client.aclose()
        # always_off: the span context is valid but unsampled — still sent, sampled flag clear
        assert int(sent["traceparent"].rsplit("-", 1)[1], 16) & 0x01 == 0
        assert rig.finished_spans() == []
    finally:
        rig.tel.shutdown()


def test_partner_client_quiets_httpx_request_log_unless_configured() -> None:
    import logging

    from sample_service.partner_client import quiet_httpx_request_log

    httpx_logger = logging.getLogger("httpx")
    saved = httpx_logger.level
    try:
        httpx_logger.setLevel(logging.NOTSET)
        quiet_httpx_request_log()
        assert httpx_logger.level == logging.WARNING
        httpx_logger.setLevel(logging.DEBUG)  # an operator's explicit choice wins
        quiet_httpx_request_log()
        assert httpx_logger.level == logging.DEBUG
    finally:
        httpx_logger.setLevel(saved)
