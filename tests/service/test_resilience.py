"""Telemetry and the database failing: requests still succeed (or fail with a 503 and a message),
exports never run on the event loop, and shutdown keeps to its bound."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sample_service.app import create_app
from sample_service.telemetry import setup_telemetry
from tests.service.support import PartnerProcess, apoll_until, dead_port, make_settings, running_app
from tests.service.test_smoke import APPLICANT


class ThreadRecordingExporter(SpanExporter):
    """Wraps a real OTLP exporter (to a dead port) and notes the thread of every export call."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.threads: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.threads.append(threading.get_ident())
        return self.inner.export(spans)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


async def _serve(app, requests: int, partner: PartnerProcess | None = None) -> list[int]:
    statuses = []
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            for i in range(requests):
                r = await client.post("/v1/evaluate", json={**APPLICANT, "user_id": 20 + i})
                statuses.append(r.status_code)
    return statuses


async def test_dead_collector_requests_succeed_exports_off_loop_and_shutdown_is_bounded(
    database_url: str, partner: PartnerProcess, monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = f"http://127.0.0.1:{dead_port()}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export while requests are still running
    settings = make_settings(database_url, partner.url, shutdown_timeout_s=2.0)

    # 1) The exporters the service builds itself from OTEL_* (gRPC/HTTP to a dead port).
    tel = setup_telemetry(settings)
    app = create_app(settings, telemetry=tel)
    t0 = time.perf_counter()
    assert await _serve(app, 20) == [200] * 20
    serving = time.perf_counter() - t0
    t0 = time.perf_counter()
    await asyncio.to_thread(tel.shutdown)
    assert time.perf_counter() - t0 <= settings.shutdown_timeout_s + 0.5
    assert serving < 10, serving  # no request waited on an export retry

    # 2) Which thread exports: never the event loop's.
    grpc_target = endpoint.replace("http://", "")
    recorder = ThreadRecordingExporter(OTLPSpanExporter(endpoint=grpc_target, insecure=True))
    tel = setup_telemetry(settings, span_exporter=recorder)
    app = create_app(settings, telemetry=tel)
    assert await _serve(app, 5) == [200] * 5
    loop_thread = threading.get_ident()
    await apoll_until(lambda: recorder.threads, "an export call", within=5)
    t0 = time.perf_counter()
    await asyncio.to_thread(tel.shutdown)
    assert time.perf_counter() - t0 <= settings.shutdown_timeout_s + 0.5
    assert recorder.threads, "the batch processor never exported"
    assert loop_thread not in recorder.threads


async def test_database_down_means_not_ready_and_503s_with_a_message(partner: PartnerProcess) -> None:
    settings = make_settings(f"postgresql+asyncpg://o11y:x@127.0.0.1:{dead_port()}/o11y", partner.url)
    async with running_app(settings) as running:
        assert (await running.client.get("/healthz")).status_code == 200
        ready = await running.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"] == "not_ready"
        r = await running.client.post("/v1/evaluate", json=APPLICANT)
        assert r.status_code == 503 and r.json()["message"], r.text
        r = await running.client.get("/v1/users/3/records")
        assert r.status_code == 503 and r.json()["message"], r.text


async def test_readyz_is_ready_with_a_database(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as running:
        r = await running.client.get("/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ready"}


async def test_partner_failures_degrade_the_decision_not_the_response(database_url: str, tmp_path) -> None:
    from tests.service.support import partner_process

    with partner_process(tmp_path, O11Y_PARTNER_ERROR_RATE="1.0") as failing:
        async with running_app(make_settings(database_url, failing.url)) as running:
            r = await running.client.post("/v1/evaluate", json=APPLICANT)
    assert r.status_code == 200 and r.json()["partner"] == {"status": "error", "score": None}
    async with running_app(make_settings(database_url, f"http://127.0.0.1:{dead_port()}")) as running:
        r = await running.client.post("/v1/evaluate", json=APPLICANT)
    assert r.status_code == 200 and r.json()["partner"]["status"] == "error"
