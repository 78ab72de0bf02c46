"""The partner API serves its own RED metrics on /metrics (Prometheus scrapes it as job partner-api)."""

from __future__ import annotations

import random

import httpx

from sample_service.partner import create_partner_app
from sample_service.telemetry import catalog
from tests.service.support import in_memory_telemetry, make_settings


async def test_partner_exposes_request_duration_by_route() -> None:
    settings = make_settings("postgresql+asyncpg://unused@127.0.0.1:9/unused", partner_latency_ms=0.0,
                             partner_jitter_ms=0.0)
    tel = in_memory_telemetry(settings)
    app = create_partner_app(settings, telemetry=tel.telemetry, rng=random.Random(1))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://partner") as c:
            assert (await c.get("/v1/score/7")).status_code == 200
            scrape = await c.get("/metrics", headers={"accept": "application/openmetrics-text"})
        assert scrape.status_code == 200
        count = tel.sample(
            catalog.HTTP_SERVER_DURATION.count,
            {catalog.L.HTTP_METHOD: "GET", catalog.L.HTTP_ROUTE: "/v1/score/{user_id}",
             catalog.L.HTTP_STATUS: "200", catalog.L.ERROR_TYPE: ""},
        )
        assert count == 1.0
        assert catalog.HTTP_SERVER_DURATION.prom in scrape.text
        # The scrape itself is excluded from telemetry: still one observation only.
        assert '/metrics' not in scrape.text
    finally:
        tel.telemetry.shutdown()
