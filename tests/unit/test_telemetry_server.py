"""The server middleware: one semconv SERVER span per request, function spans nested under it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.unit.test_telemetry_support import Rig, build_app, client_for, make_rig, server_spans


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = make_rig()
    yield rig
    rig.tel.shutdown()


async def test_request_span_has_semconv_attributes_and_route_name(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        response = await client.get("/items/21?q=1", headers={"user-agent": "pytest-ua"})
    assert response.json() == {"value": 43}

    [server] = server_spans(rig.finished_spans())
    assert server.name == "GET /items/{item_id}"
    assert server.kind is SpanKind.SERVER
    attrs = dict(server.attributes or {})
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.route"] == "/items/{item_id}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["url.path"] == "/items/21"
    assert attrs["url.query"] == "q=1"
    assert attrs["url.scheme"] == "http"
    assert attrs["user_agent.original"] == "pytest-ua"
    assert "error.type" not in attrs
    assert server.status.status_code is StatusCode.UNSET


async def test_function_spans_nest_under_request_span_async_and_sync(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        assert (await client.get("/items/1")).status_code == 200
        assert (await client.get("/sync/2")).json() == {"value": 4}

    spans = rig.finished_spans()
    by_name = {s.name: s for s in spans}
    items = by_name["GET /items/{item_id}"]
    fetch, inner, compute_async = by_name["demo.fetch"], by_name["demo.inner"], None
    assert fetch.parent is not None and fetch.parent.span_id == items.context.span_id
    assert inner.parent is not None and inner.parent.span_id == fetch.context.span_id
    assert dict(inner.attributes or {}) == {"demo.x": 1}
    computes = [s for s in spans if s.name == "demo.compute"]
    assert len(computes) == 2
    compute_async = next(s for s in computes if s.context.trace_id == items.context.trace_id)
    assert compute_async.parent is not None and compute_async.parent.span_id == inner.context.span_id
    assert all(s.kind is SpanKind.INTERNAL for s in (fetch, inner, compute_async))

    # The sync endpoint runs in the threadpool: the context (and the active tracer) must follow.
    sync_server = by_name["GET /sync/{item_id}"]
    compute_sync = next(s for s in computes if s.context.trace_id == sync_server.context.trace_id)
    assert compute_sync.parent is not None and compute_sync.parent.span_id == sync_server.context.span_id


async def test_w3c_traceparent_is_continued(rig: Rig) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with client_for(build_app(rig.tel)) as client:
        await client.get("/items/1", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    [server] = server_spans(rig.finished_spans())
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and format(server.parent.span_id, "016x") == parent_id
    assert server.parent.is_remote


async def test_excluded_paths_produce_no_span_and_no_metrics(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    # healthz calls span(): outside a traced request there is no active tracer, so nothing at all.
    assert rig.finished_spans() == []
    samples = rig.scrape()["http_server_request_duration_seconds"]
    assert [s for s in samples if s.name.endswith("_count")] == []


async def test_server_errors_mark_span_and_record_exception(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/unavailable")).status_code == 503
        assert (await client.get("/nowhere")).status_code == 404

    spans = {s.name: s for s in server_spans(rig.finished_spans())}
    boom = spans["GET /boom"]
    assert boom.status.status_code is StatusCode.ERROR
    assert boom.attributes["error.type"] == "RuntimeError"
    assert boom.attributes["http.response.status_code"] == 500
    [event] = boom.events
    assert event.name == "exception" and event.attributes["exception.message"] == "kaput"

    unavailable = spans["GET /unavailable"]
    assert unavailable.status.status_code is StatusCode.ERROR
    assert unavailable.attributes["error.type"] == "503"

    # No route matched: semconv says no http.route and the span is named by the method alone.
    not_found = spans["GET"]
    assert "http.route" not in not_found.attributes
    assert not_found.status.status_code is StatusCode.UNSET  # 4xx is not a server error

    families = rig.scrape()
    counts = {
        (s.labels["http_route"], s.labels["http_response_status_code"], s.labels["error_type"]): s.value
        for s in families["http_server_request_duration_seconds"]
        if s.name.endswith("_count")
    }
    assert counts == {
        ("/boom", "500", "RuntimeError"): 1,
        ("/unavailable", "503", "503"): 1,
        ("", "404", ""): 1,
    }


async def test_active_requests_gauge_returns_to_zero(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        await client.get("/items/3")
        await client.get("/boom")
    [active] = [
        s for s in rig.scrape()["http_server_active_requests"] if s.labels["http_request_method"] == "GET"
    ]
    assert active.value == 0
