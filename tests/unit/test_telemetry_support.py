"""Shared pieces of the telemetry unit tests: a tiny instrumented FastAPI app and scrape helpers.

Everything is real: the SDK's BatchSpanProcessor/BatchLogRecordProcessor with its in-memory
exporters, prometheus-client's registry and OpenMetrics output parsed by its own parser.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sample_service.settings import Settings
from sample_service.telemetry import FASTAPI_NATIVE_TELEMETRY_OFF, Telemetry, setup_telemetry, span, traced

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@dataclass
class Rig:
    tel: Telemetry
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    stdout: io.BytesIO

    def finished_spans(self) -> list[ReadableSpan]:
        assert self.tel.tracer_provider is not None
        self.tel.tracer_provider.force_flush()
        return list(self.spans.get_finished_spans())

    def scrape(self) -> dict[str, list[Sample]]:
        """OpenMetrics scrape parsed by prometheus-client's parser: family name → samples."""
        body, content_type = self.tel.metrics_response(OPENMETRICS)
        assert content_type.startswith("application/openmetrics-text"), content_type
        return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def make_rig(**settings: Any) -> Rig:
    spans, logs, stdout = InMemorySpanExporter(), InMemoryLogRecordExporter(), io.BytesIO()
    settings.setdefault("telemetry_global_providers", False)
    tel = setup_telemetry(Settings(**settings), span_exporter=spans, log_exporter=logs, log_stream=stdout)
    return Rig(tel, spans, logs, stdout)


# --- the app under test ----------------------------------------------------------------------
@traced("demo.compute")
def compute(x: int) -> int:
    return x * 2


@traced("demo.fetch")
async def fetch(x: int) -> int:
    with span("demo.inner", {"demo.x": x}):
        return compute(x) + 1


def build_app(tel: Telemetry, **instrument: Any) -> FastAPI:
    import logging

    log = logging.getLogger("tests.demo")
    app = FastAPI(telemetry=FASTAPI_NATIVE_TELEMETRY_OFF)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"value": await fetch(item_id)}

    @app.get("/sync/{item_id}")
    def sync_item(item_id: int) -> dict[str, int]:  # runs in the threadpool
        return {"value": compute(item_id)}

    @app.get("/log")
    async def log_something() -> dict[str, bool]:
        with span("demo.logging"):
            log.warning("inside %s", "span", extra={"demo.key": "v"})
        return {"ok": True}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    @app.get("/unavailable")
    async def unavailable() -> Response:
        return Response(status_code=503)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        with span("healthz.should-not-be-under-a-server-span"):
            return {"ok": True}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        body, content_type = tel.metrics_response(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    tel.instrument_app(app, **instrument)
    return app


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://testserver"
    )


def server_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    from opentelemetry.trace import SpanKind

    return [s for s in spans if s.kind is SpanKind.SERVER]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_until(fn: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_support_app_builds_and_serves_without_telemetry_errors() -> None:
    rig = make_rig()
    try:
        app = build_app(rig.tel)
        assert any(m.cls.__name__ == "ServerTelemetryMiddleware" for m in app.user_middleware)
    finally:
        rig.tel.shutdown()
