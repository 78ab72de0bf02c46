"""Run as a script by test_telemetry_interop.py: the OTel globals can be set once per process, so the
global-provider checks run in a fresh interpreter. Prints one JSON object: the exported spans and logs."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sample_service.settings import Settings
from sample_service.telemetry import FASTAPI_NATIVE_TELEMETRY_OFF, setup_telemetry
from sample_service.telemetry.compat import InMemoryLogRecordExporter


async def main() -> None:
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tel = setup_telemetry(Settings(log_json_stdout=False), span_exporter=spans, log_exporter=logs)
    partner = FastAPI(telemetry=FASTAPI_NATIVE_TELEMETRY_OFF)

    @partner.get("/pong")
    async def pong() -> dict[str, bool]:
        return {"ok": True}

    app = FastAPI(telemetry=FASTAPI_NATIVE_TELEMETRY_OFF)

    @app.get("/work")
    async def work() -> dict[str, bool]:
        # What a team's own code does: the global API, no handle on our Telemetry.
        with trace.get_tracer("team.code").start_as_current_span("team.step"):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=partner),
                                         base_url="http://partner") as client:
                # A contrib instrumentation the team added on its own client.
                HTTPXClientInstrumentor.instrument_client(client)
                await client.get("/pong")
        return {"ok": True}

    tel.instrument_app(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        assert (await client.get("/work")).status_code == 200
    assert tel.force_flush()
    print(json.dumps({
        "spans": [
            {"name": s.name, "scope": s.instrumentation_scope.name, "trace": s.context.trace_id,
             "id": s.context.span_id, "parent": s.parent.span_id if s.parent else None}
            for s in spans.get_finished_spans()
        ],
    }))
    tel.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
