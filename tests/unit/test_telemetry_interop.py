"""Interop with stock OpenTelemetry (issue 12 item 2): global providers, the lean span in SDK
processors/exporters, and the contrib ASGI options (excluded URLs, header capture, hooks)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from sample_service.telemetry import providers
from sample_service.telemetry.lean_trace import LeanSpan
from tests.unit.test_telemetry_support import Rig, build_app, client_for, make_rig, server_spans

REPO = Path(__file__).resolve().parents[2]


def test_user_spans_and_contrib_instrumentation_join_the_request_trace() -> None:
    # A fresh interpreter: the OTel globals can be set once per process.
    proc = subprocess.run([sys.executable, "-m", "tests.unit.interop_app"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    spans = {s["name"]: s for s in json.loads(proc.stdout.splitlines()[0])["spans"]}
    server, user, client = spans["GET /work"], spans["team.step"], spans["GET"]
    assert server["parent"] is None and server["scope"] == "sample_service"
    assert (user["scope"], user["parent"], user["trace"]) == ("team.code", server["id"], server["trace"])
    assert client["scope"] == "opentelemetry.instrumentation.httpx"
    assert (client["parent"], client["trace"]) == (user["id"], server["trace"])
    assert len(spans) == 3  # FastAPI's own telemetry stays off: no second server span


def test_lean_span_goes_through_the_sdk_console_exporter() -> None:
    out = io.StringIO()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out)))
    tracer = providers.tracer_for(provider, "interop")
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={"a": 1}) as outer:
        assert isinstance(outer, LeanSpan)
        with tracer.start_as_current_span("inner") as inner:
            inner.add_event("evt", {"k": "v"})
            inner.set_status(Status(StatusCode.ERROR, "bad"))
    provider.shutdown()
    printed = [json.loads(chunk) for chunk in out.getvalue().replace("}\n{", "}\x00{").split("\x00")]
    inner_json, outer_json = printed
    assert (inner_json["name"], outer_json["name"]) == ("inner", "outer")
    assert inner_json["parent_id"] == outer_json["context"]["span_id"]
    assert outer_json["kind"] == "SpanKind.SERVER" and outer_json["attributes"] == {"a": 1}
    assert inner_json["events"][0]["name"] == "evt" and inner_json["status"]["status_code"] == "ERROR"


async def test_excluded_urls_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "sync/.*")
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "items/7$")  # wins over the generic one
    rig = make_rig()
    try:
        async with client_for(build_app(rig.tel)) as client:
            for path in ("/items/7", "/items/8", "/sync/1"):
                assert (await client.get(path)).status_code == 200
        assert rig.tel.force_flush()
        traced = [s.attributes["url.path"] for s in server_spans(rig.finished_spans())]
        assert traced == ["/items/8", "/sync/1"]
        paths = {s.labels.get("http_route") for s in rig.scrape()["http_server_request_duration_seconds"]}
        assert "/items/{item_id}" in paths
    finally:
        rig.tel.shutdown()


async def test_header_capture_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-tenant,x-secret")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", "content-type")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "x-secret")
    rig = make_rig()
    try:
        async with client_for(build_app(rig.tel)) as client:
            response = await client.get("/items/7", headers={"X-Tenant": "acme", "X-Secret": "hunter2"})
            assert response.status_code == 200
        assert rig.tel.force_flush()
        (server,) = server_spans(rig.finished_spans())
        assert server.attributes["http.request.header.x_tenant"] == ("acme",)
        assert server.attributes["http.request.header.x_secret"] == ("[REDACTED]",)
        assert server.attributes["http.response.header.content_type"] == ("application/json",)
        assert not any(k.startswith("http.request.header.user") for k in server.attributes)
    finally:
        rig.tel.shutdown()


async def test_request_and_response_hooks_as_contrib_offers_them(rig: Rig) -> None:
    seen: list[tuple[str, Any]] = []

    def server_request_hook(span: Any, scope: Any) -> None:
        span.set_attribute("team.tenant", scope["path"])

    def client_request_hook(span: Any, scope: Any, message: Any) -> None:
        seen.append(("receive", message["type"]))

    def client_response_hook(span: Any, scope: Any, message: Any) -> None:
        seen.append(("send", message["type"]))
        if message["type"] == "http.response.start":
            span.set_attribute("team.status", message["status"])

    def broken_hook(span: Any, scope: Any) -> None:
        raise RuntimeError("a team's bug")

    app = build_app(rig.tel, server_request_hook=server_request_hook, client_request_hook=client_request_hook,
                    client_response_hook=client_response_hook)
    async with client_for(app) as client:
        assert (await client.post("/items/7")).status_code == 405
        assert (await client.get("/items/7")).status_code == 200
    assert rig.tel.force_flush()
    first, second = server_spans(rig.finished_spans())
    assert second.attributes["team.tenant"] == "/items/7" and second.attributes["team.status"] == 200
    assert first.attributes["team.status"] == 405
    assert ("send", "http.response.start") in seen and ("send", "http.response.body") in seen

    broken = make_rig()
    try:
        async with client_for(build_app(broken.tel, server_request_hook=broken_hook)) as client:
            assert (await client.get("/items/7")).status_code == 200  # a raising hook is logged, not fatal
        assert broken.tel.force_flush() and len(server_spans(broken.finished_spans())) == 1
    finally:
        broken.tel.shutdown()
