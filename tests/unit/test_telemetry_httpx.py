"""Outgoing calls: CLIENT span, W3C propagation to the callee, http.client.request.duration."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.trace import SpanKind, StatusCode

from sample_service.telemetry import catalog
from tests.unit.test_telemetry_support import Rig, client_for, make_rig


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = make_rig()
    yield rig
    rig.tel.shutdown()


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
